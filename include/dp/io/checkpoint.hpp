// Checkpoints: the model, the optimizer's state (by parameter name), the module settings, the step
// counters (which also seed dropout's random streams) and the loader's position (epoch and next batch; the order
// itself derives from the seed and the epoch), in one safetensors file, written atomically. A run
// resumed from a checkpoint reproduces the uninterrupted run bit for bit.
#pragma once

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <dp/core/hash.hpp>
#include <dp/io/model.hpp>
#include <dp/io/safetensors.hpp>

namespace dp::inline DP_ABI::io {

/// Where the training loop was: the next batch to run is `batch` of `epoch`.
struct progress {
  std::int64_t epoch = 0;
  std::int64_t batch = 0;
  /// What the run was made with, in the application's words ("batch=32 seed=1"): stored, returned
  /// by load_checkpoint, for the application to compare with the run that resumes (a resume with
  /// another seed would, for one, split train and test data differently).
  std::string recipe{};
};

/// What load_checkpoint does with an optimizer made with other options (lr, betas, the schedule, ...)
/// than the one whose state the checkpoint holds.
enum class changed_options : std::uint8_t {
  refuse,  ///< an io_error naming the first option that differs: the resumed run would not be the saved one's
  keep,    ///< train on with the given options (a deliberate change, as a lower learning rate from here)
};

/// What a checkpoint needs of an optimizer, as every dp::optim optimizer has it: the trainer or
/// dp::parallel it trains, its name (kind), its state slots by name (name and value each), its step count, and
/// load_state taking both back. Where it also has option_values() (name and value texts), they are
/// stored, and a resume made with others is refused unless asked for.
template <class Opt>
concept checkpointed_optimizer = requires(Opt& o) {
  o.owner();
  { o.kind() } -> std::convertible_to<std::string_view>;
  { o.steps() } -> std::convertible_to<std::int64_t>;
  o.state().front().name;
  o.state().front().value;
  o.load_state(o.steps(), o.state());
};

namespace detail {
/// Reports a third argument that is not an optimizer; save_checkpoint and load_checkpoint go no
/// further then, so that this message is the only error.
template <class Opt>
constexpr bool check_optimizer() {
  static_assert(checkpointed_optimizer<Opt>,
                "dp: a checkpoint's third argument is the optimizer that trains the model (dp::optim::sgd, adam or "
                "adamw, made from the same trainer or dp::parallel)");
  return checkpointed_optimizer<Opt>;
}

/// The optimizer must be the one made from `owner`: another's state (say, its momentum) would be
/// saved or loaded beside these weights, and parameters of the same names would hide the mix-up.
template <class Owner, class Opt>
void check_pair(const char* what, const std::string& path, const Owner& owner, const Opt& opt) {
  require_active(owner, what, path);
  DP_CHECK(static_cast<const void*>(&opt.owner()) == static_cast<const void*>(&owner), value_error, "dp: ", what, "(",
           path,
           "): the optimizer was made from another trainer or dp::parallel than the one given; pass the "
           "optimizer made from this one (dp::optim::sgd(owner, ...))");
}

/// A setting's bits as a whole number (zero-extended to 64 bits), the form a checkpoint stores.
template <class V>
std::uint64_t setting_bits(const V& v) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  return bits;
}

/// The largest number setting_bits gives for a V: a stored value past it was not written for V.
template <class V>
constexpr std::uint64_t setting_bits_max() {
  if constexpr (std::is_same_v<V, bool>) {
    return 1;
  } else if constexpr (sizeof(V) == 8) {
    return UINT64_MAX;
  } else {
    return (std::uint64_t{1} << (8 * sizeof(V))) - 1;
  }
}

/// The progress fields as load_checkpoint reads them back: epoch and batch whole numbers from 0, and
/// a header (which holds the recipe) within what readers take, in UTF-8. Checked before anything is
/// written.
inline void check_progress(const std::string& path, const progress& p) {
  DP_CHECK(p.epoch >= 0, value_error, "dp: save_checkpoint(", path, "): progress.epoch is ", p.epoch,
           ", but an epoch is a whole number from 0 (the next epoch to run)");
  DP_CHECK(p.batch >= 0, value_error, "dp: save_checkpoint(", path, "): progress.batch is ", p.batch,
           ", but a batch is a whole number from 0 (the next batch of the epoch to run)");
  DP_CHECK(p.recipe.size() < max_header_bytes, value_error, "dp: save_checkpoint(", path, "): progress.recipe is ",
           p.recipe.size(), " bytes, but it is stored in the file's header, which readers take up to ",
           max_header_bytes, " bytes; store a short description of the run");
  const std::size_t bad = json::first_invalid_utf8(p.recipe);
  DP_CHECK(bad == std::string_view::npos, value_error, "dp: save_checkpoint(", path,
           "): progress.recipe is not valid UTF-8 at byte ", bad,
           "; it is stored in the file's JSON header, which readers require to be UTF-8 (write it as UTF-8 text)");
}

/// Optimizer state is saved only as load_checkpoint takes it: finite. A moment that overflowed (Adam's
/// exp_avg_sq past float's range after a gradient of 1e21: the run goes on, that weight frozen)
/// made a checkpoint that no load accepts, found only when resuming.
template <class T>
void check_saved_state(const std::string& path, const std::string& name, const tensor<T>& value) {
  const std::vector<T> v = value.to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) {
    DP_CHECK(std::isfinite(v[i]), value_error, "dp: save_checkpoint(", path, "): 'optimizer.", name, "' holds ", v[i],
             " at element ", i,
             "; load_checkpoint takes finite optimizer state only (this run's gradients overflowed, and that "
             "state can no longer train its weight)");
  }
}

template <class Owner, class Opt>
void save_checkpoint(const std::string& path, const Owner& owner, const Opt& opt, const progress& p) {
  check_pair("save_checkpoint", path, owner, opt);
  check_progress(path, p);
  // Gradients are not stored, but the step count and the batch statistics of their forward are:
  // the resumed run would lose those batches (mid-accumulation) or count them twice (run again).
  using grad_state = std::remove_cvref_t<decltype(owner.gradients())>;  // nn's, named through the owner
  DP_CHECK(owner.gradients() != grad_state::local, value_error, "dp: save_checkpoint(", path,
           "): gradients are being accumulated (dp::no_sync) and a checkpoint does not store them, so a resumed run "
           "would lose those micro-batches; save after the optimizer's step");
  DP_CHECK(owner.gradients() != grad_state::complete, value_error, "dp: save_checkpoint(", path,
           "): a backward's gradients wait for the optimizer's step and a checkpoint does not store them, though it "
           "stores the step count and batch statistics that backward moved on: a resumed run would train on that "
           "batch again and count it twice; save after the optimizer's step (or after skip_step(), where the loss was "
           "not finite)");
  auto entries = detail::model_entries(owner.model());
  for (const auto& s : opt.state()) {
    check_saved_state(path, s.name, s.value);
    entries.push_back(make_entry("optimizer." + s.name, s.value));
  }
  std::vector<std::pair<std::string, std::string>> meta{{"format", "pt"},
                                                        {"dp.kind", "checkpoint"},
                                                        {"dp.epoch", std::to_string(p.epoch)},
                                                        {"dp.batch", std::to_string(p.batch)},
                                                        {"dp.recipe", p.recipe},
                                                        {"dp.optimizer", std::string(opt.kind())},
                                                        {"dp.optimizer_steps", std::to_string(opt.steps())},
                                                        {"dp.trainer_steps", std::to_string(owner.steps())}};
  // Random modules' seeds (dropout): with the step counter they fix every mask still to come.
  detail::state<decltype(owner.model())>::for_each_seed(
      owner.model(),
      [&](const std::string& name, std::uint64_t seed) { meta.emplace_back("dp.seed." + name, std::to_string(seed)); });
  // Every module setting, bit for bit (dropout's p, a norm's eps, a custom module's listed values):
  // one an edit changed while training (a dropout schedule) is state a resume continues from.
  std::size_t settings = 0;
  detail::state<decltype(owner.model())>::for_each_setting(owner.model(), [&](const std::string& name, const auto& v) {
    meta.emplace_back("dp.setting." + name, std::to_string(detail::setting_bits(v)));
    ++settings;
  });
  meta.emplace_back("dp.settings", std::to_string(settings));
  if constexpr (requires { opt.option_values(); }) {
    const auto options = opt.option_values();
    for (const auto& [name, value] : options) {
      meta.emplace_back("dp.option." + name, value);
    }
    meta.emplace_back("dp.options", std::to_string(options.size()));
  }
  write(path, std::move(entries), std::move(meta));
}

/// load_checkpoint's work: ready(the file's fingerprint) comes before the first write.
/// Refuses, unless `rule` keeps them, options of `opt` other than those the checkpoint stored (none
/// stored: a checkpoint written before they were, or by an optimizer of the application's own).
template <class Opt>
void check_options(const std::string& path, const header& h, const Opt& opt, changed_options rule) {
  if constexpr (requires { opt.option_values(); }) {
    if (rule == changed_options::keep || h.meta("dp.options") == nullptr) {
      return;
    }
    const auto differ = [&](const std::string& name, const std::string* stored, const std::string* given) {
      throw io_error(dp::detail::concat(
          "dp: load_checkpoint(", path, "): the run that saved it had ", opt.kind(), " ", name, " ",
          stored ? *stored : std::string("(none)"), ", and the optimizer given has ", name, " ",
          given ? *given : std::string("(none)"),
          ": the resumed run would not continue the saved one; make the optimizer with the saved options, or pass "
          "dp::io::changed_options::keep to train on with the new ones; nothing was loaded"));
    };
    const auto given = opt.option_values();
    for (const auto& [name, value] : given) {
      const std::string* stored = h.meta("dp.option." + name);
      if (stored == nullptr || *stored != value) {
        differ(name, stored, &value);
      }
    }
    // One the optimizer given lacks (a warm-up the resumed run left out).
    const std::string prefix = "dp.option.";
    for (const auto& entry : h.metadata) {  // not a structured binding: clang before 16 cannot capture one
      const std::string& key = entry.first;
      if (key.starts_with(prefix) && std::none_of(given.begin(), given.end(), [&](const auto& g) {
            return key.substr(prefix.size()) == g.first;
          })) {
        differ(key.substr(prefix.size()), &entry.second, nullptr);
      }
    }
  }
}

template <class Owner, class Opt, class Ready>
progress load_checkpoint(const std::string& path, Owner& owner, Opt& opt, Ready& ready, changed_options rule) {
  const reader r(path);
  const header& h = r.info();
  // verify() checks the CRCs a file has: a checkpoint whose CRC keys were lost (a damaged or edited
  // header) would load unverified. The data's CRC is in every dp checkpoint. The header's came after
  // dp 0.1.0, whose checkpoints still load (their data verified); a file with any key 0.1.0 never
  // wrote was written with a header CRC, so without one it is refused (a list of what 0.1.0 wrote,
  // so that deleting more keys cannot pass a file off as one of its).
  const auto of_0_1_0 = [](const std::pair<std::string, std::string>& kv) {
    const std::string& k = kv.first;
    return k == "format" || k == "dp.kind" || k == "dp.epoch" || k == "dp.batch" || k == "dp.optimizer_steps" ||
           k == "dp.trainer_steps" || k == "dp.crc32" || k.starts_with("dp.seed.");
  };
  const bool after_0_1_0 = !std::all_of(h.metadata.begin(), h.metadata.end(), of_0_1_0);
  for (const char* key : {"dp.crc32", "dp.header_crc32"}) {
    const bool data = std::string_view(key) == "dp.crc32";
    DP_CHECK(h.meta(key) != nullptr || (!data && !after_0_1_0), io_error, "dp: ", path,
             " is a damaged or edited dp checkpoint: its metadata holds no ", key, " (the CRC-32 of its ",
             data ? "data, which every dp checkpoint carries" : "header, which every dp checkpoint since 0.1.0 carries",
             "); nothing was loaded");
  }
  r.verify();
  // The file's CRCs and metadata (verified above where the header has its CRC) stand for its
  // content: the ranks compare them before any write. A dp 0.1.0 file has no header CRC, so its
  // progress and counts are hashed as they are.
  std::uint64_t fingerprint = dp::detail::fnv1a_basis;
  for (const auto& [key, value] : h.metadata) {
    for (const std::string* text : {&key, &value}) {
      fingerprint = dp::detail::fnv1a(std::string_view(text->c_str(), text->size() + 1), fingerprint);  // with its '\0'
    }
  }
  auto agreed = [&] { ready(fingerprint); };
  // Digits only, the whole value, within range: "-3" or "3abc" is an error, not epoch -3 or 3.
  auto number = [&](const char* key, std::uint64_t most = static_cast<std::uint64_t>(INT64_MAX)) {
    const std::string* v = h.meta(key);
    DP_CHECK(v != nullptr, io_error, "dp: ", path, " is not a dp checkpoint (no ", key, " in its metadata)");
    std::uint64_t x = 0;
    const char* end = v->data() + v->size();
    const auto [at, ec] = std::from_chars(v->data(), end, x);
    DP_CHECK(!v->empty() && (*v)[0] != '-' && (*v)[0] != '+' && ec == std::errc() && at == end && x <= most, io_error,
             "dp: ", path, ": metadata ", key, " = '", *v, "' is not a whole number in [0, ", most, "]");
    return x;
  };
  const std::string* recipe = h.meta("dp.recipe");  // absent in checkpoints written before it existed
  const progress p{static_cast<std::int64_t>(number("dp.epoch")), static_cast<std::int64_t>(number("dp.batch")),
                   recipe != nullptr ? *recipe : std::string()};
  std::vector<std::uint64_t> seeds;
  detail::state<decltype(owner.model())>::for_each_seed(owner.model(), [&](const std::string& name, std::uint64_t) {
    DP_CHECK(h.meta("dp.seed." + name) != nullptr, io_error, "dp: ", path,
             " does not fit this model: it holds no seed for the random module '", name,
             "' (a checkpoint of a model without it?); nothing was loaded");
    seeds.push_back(number(("dp.seed." + name).c_str(), UINT64_MAX));  // seeds use all 64 bits
  });
  // Module settings: absent from checkpoints written before they were stored (the model keeps its own).
  const bool has_settings = h.meta("dp.settings") != nullptr;
  std::vector<std::uint64_t> settings;
  if (has_settings) {
    detail::state<decltype(owner.model())>::for_each_setting(
        owner.model(), [&](const std::string& name, const auto& v) {
          const std::string key = "dp.setting." + name;
          DP_CHECK(h.meta(key) != nullptr, io_error, "dp: ", path, " does not fit this model: it holds no setting '",
                   name, "'; nothing was loaded");
          settings.push_back(number(key.c_str(), setting_bits_max<std::remove_cvref_t<decltype(v)>>()));
        });
    const std::uint64_t stored = number("dp.settings");
    DP_CHECK(stored == settings.size(), io_error, "dp: ", path, " does not fit this model: it holds ", stored,
             " module settings, the model ", settings.size(), "; nothing was loaded");
  }
  // Adam's moments under AdamW (the same state names) would resume another run: refused. Absent in
  // checkpoints written before it was stored.
  const std::string* kind = h.meta("dp.optimizer");
  DP_CHECK(kind == nullptr || *kind == opt.kind(), io_error, "dp: ", path, " holds the state of optimizer '",
           kind ? *kind : std::string(), "', and the optimizer given is '", opt.kind(),
           "': resume with dp::optim::", kind ? *kind : std::string(),
           " made from this trainer or dp::parallel; nothing was loaded");
  // Options before state: one that decides which state there is (SGD's momentum) is named as the
  // option, not as a state name the model lacks.
  check_options(path, h, opt, rule);
  // load_state's own bound, checked here so that nothing is loaded when the count would be refused.
  const auto opt_steps = static_cast<std::int64_t>(number("dp.optimizer_steps", (std::uint64_t{1} << 53) - 1));
  const auto trainer_steps = static_cast<std::int64_t>(number("dp.trainer_steps"));
  // The optimizer's expected state, checked together with the model's names.
  std::vector<std::string> opt_names;
  auto slots = opt.state();
  for (const auto& s : slots) {
    opt_names.push_back("optimizer." + s.name);
    const tensor_entry* e = r.find("optimizer." + s.name);
    DP_CHECK(e && e->shape == s.value.shape() && e->type == dtype_of<typename Owner::value_type>(), io_error,
             "dp: ", path, " does not fit this optimizer: state '", s.name, "' is ",
             e ? (e->shape != s.value.shape() ? "mis-shaped" : "of another element type") : "missing",
             "; nothing was loaded");
  }
  detail::check_against(owner.model(), h, path, "", opt_names);
  // Everything fits: read it all (the allocations that may fail), then assign.
  {
    detail::staged_tensors model(owner, r, "");
    for (auto& s : slots) {
      s.value = r.read<typename Owner::value_type>(*r.find("optimizer." + s.name));
    }
    if constexpr (requires { opt.load_state(opt_steps, slots, std::function<void()>{}); }) {
      try {
        opt.load_state(opt_steps, slots, agreed);  // agreed() after its copies, before its first write
      } catch (const value_error& e) {             // state it refuses (a NaN moment): said with the file's name
        const std::string_view why = e.what();
        throw value_error(dp::detail::concat("dp: load_checkpoint(", path, "): ",
                                             why.starts_with("dp: ") ? why.substr(4) : why, "; nothing was loaded"));
      }
    } else {  // an optimizer of the application's own: its copies come after the agreement
      agreed();
      opt.load_state(opt_steps, slots);
    }
    model.commit(owner, [&](auto& m) {
      std::size_t i = 0;
      detail::state<decltype(m)>::for_each_seed(m, [&](const std::string&, std::uint64_t& seed) { seed = seeds[i++]; });
      std::size_t k = 0;
      if (has_settings) {
        detail::state<decltype(m)>::for_each_setting(m, [&](const std::string&, auto& v) {
          std::memcpy(&v, &settings[k++], sizeof v);  // setting_bits in reverse
        });
      }
    });
  }
  dp::detail::replica_access::restore_steps(owner, static_cast<std::uint64_t>(trainer_steps));
  return p;
}
template <class Owner, class Opt>
progress load_checkpoint(const std::string& path, Owner& owner, Opt& opt, changed_options rule) {
  check_pair("load_checkpoint", path, owner, opt);
  return agreed_update(owner, "load_checkpoint",
                       [&](auto ready) { return load_checkpoint(path, owner, opt, ready, rule); });
}
}  // namespace detail

/// Writes the model of `owner` (a trainer or dp::parallel), the state of `opt` (the optimizer made
/// from it) and the position `p` to one file, atomically.
template <class Owner, class Opt>
void save_checkpoint(const std::string& path, const Owner& owner, const Opt& opt, progress p = {}) {
  if constexpr (detail::check_optimizer<Opt>()) {
    detail::save_checkpoint(path, owner, opt, p);
  }
}

/// Restores a checkpoint into `owner` and `opt` (made like the ones that wrote it: an optimizer made
/// with other options is refused unless `rule` keeps them) and returns the position to resume from.
/// All-or-nothing, like dp::io::load.
template <class Owner, class Opt>
progress load_checkpoint(const std::string& path, Owner& owner, Opt& opt,
                         changed_options rule = changed_options::refuse) {
  if constexpr (detail::check_optimizer<Opt>()) {
    return detail::load_checkpoint(path, owner, opt, rule);
  } else {
    return {};
  }
}

}  // namespace dp::inline DP_ABI::io
