#include <chrono>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <pthread.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/scratch.hpp"

namespace nn = dp::nn;
namespace io = dp::io;

namespace {
struct net {
  nn::linear<5, 8> fc1;
  nn::batch_norm<8> bn;
  nn::linear<8, 3> fc2;
  auto forward(auto x) const { return fc2(dp::relu(bn(fc1(x)))); }
};
struct wider {
  nn::linear<5, 9> fc1;
  nn::batch_norm<9> bn;
  nn::linear<9, 3> head;
  auto forward(auto x) const { return head(dp::relu(bn(fc1(x)))); }
};
struct net64 {
  nn::linear<5, 8, double> fc1;
  nn::batch_norm<8, double> bn;
  nn::linear<8, 3, double> fc2;
  auto forward(auto x) const { return fc2(dp::relu(bn(fc1(x)))); }
};

std::string path_of(const std::string& name) { return dp_test::scratch_path(name + ".safetensors"); }
template <class M>
std::vector<std::vector<double>> values_of(const M& m) {
  std::vector<std::vector<double>> out;
  nn::for_each_tensor(m, [&](const std::string&, const auto& t) {
    std::vector<double> v;
    for (auto x : t.value().to_vector()) {
      v.push_back(static_cast<double>(x));
    }
    out.push_back(v);
  });
  return out;
}
}  // namespace

TEST_CASE("save then load restores every parameter and buffer under PyTorch's names") {
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1, .momentum = 0.9});
  const auto x = dp::randn<float>({16, 5}, dp::cpu(), 3);
  const auto y = dp::from_vector<std::int64_t>({0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0});
  par.backward(nn::cross_entropy_loss{}, x, y);  // moves batch_norm's running statistics too
  opt.step();
  const std::string path = path_of("roundtrip");
  io::save(path, par);
  const io::reader r(path);
  std::vector<std::string> names;
  for (const auto& t : r.info().tensors) {
    names.push_back(t.name);
  }
  CHECK(names == std::vector<std::string>{"bn.bias", "bn.num_batches_tracked", "bn.running_mean", "bn.running_var",
                                          "bn.weight", "fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"});
  nn::manual_seed(2);
  net fresh{};
  CHECK(values_of(fresh) != values_of(par.model()));
  io::load(path, fresh);
  CHECK(values_of(fresh) == values_of(par.model()));
  std::filesystem::remove(path);
}

TEST_CASE("saving parallel, its model, or a 3-worker parallel gives identical bytes") {
  nn::manual_seed(4);
  const net m{};
  dp::parallel<net> one{m, {dp::cpu()}};
  dp::parallel<net> three{m, {dp::cpu(0), dp::cpu(1), dp::cpu(2)}};
  io::save(path_of("a"), one);
  io::save(path_of("b"), one.model());
  io::save(path_of("c"), three);
  io::save(path_of("d"), m);
  const std::string a = dp_test::bytes_of(path_of("a"));
  CHECK(a.size() > 100);
  CHECK(a == dp_test::bytes_of(path_of("b")));
  CHECK(a == dp_test::bytes_of(path_of("c")));
  CHECK(a == dp_test::bytes_of(path_of("d")));
  // Loading into parallel reaches every replica: the 3-worker forward equals the saved model's.
  nn::manual_seed(9);
  dp::parallel<net> other{net{}, {dp::cpu(0), dp::cpu(1), dp::cpu(2)}};
  io::load(path_of("a"), other);
  other.eval();
  const auto x = dp::randn<float>({7, 5}, dp::cpu(), 5);
  nn::trainer<net> bare{m};
  bare.eval();
  // Equal up to rounding: a replica's GEMM has 2-3 of the 7 rows, and a GEMM library may round a row
  // differently by the row count it is given (LIBXSMM's kernels do).
  const auto got = dp::tensor<float>(other(x)).to_vector(), want = dp::tensor<float>(bare(x)).to_vector();
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(std::fabs(got[i] - want[i]) <= 1e-5f * (1 + std::fabs(want[i])));
  }
  for (const char* n : {"a", "b", "c", "d"}) {
    std::filesystem::remove(path_of(n));
  }
}

TEST_CASE("a file for another model, a wrong dtype or a corrupt file is an io_error; nothing is loaded") {
  nn::manual_seed(5);
  const std::string path = path_of("strict");
  io::save(path, wider{});
  nn::manual_seed(6);
  net target{};
  const auto before = values_of(target);
  try {
    io::load(path, target);
    FAIL("loading another model's file must throw");
  } catch (const dp::io_error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("does not fit this model; nothing was loaded") != std::string::npos);
    CHECK(msg.find("missing: fc2.weight, fc2.bias") != std::string::npos);
    CHECK(msg.find("fc1.weight (file: F32 {9, 5}, model: F32 {8, 5})") != std::string::npos);
    CHECK(msg.find("extra: head.bias, head.weight") != std::string::npos);
  }
  CHECK(values_of(target) == before);

  io::save(path, target);
  net64 doubles{};
  CHECK_THROWS_WITH_AS(io::load(path, doubles), doctest::Contains("fc1.weight (file: F32 {8, 5}, model: F64 {8, 5})"),
                       dp::io_error);

  std::string bytes = dp_test::bytes_of(path);
  bytes[bytes.size() - 3] ^= 0x10;
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes; }
  nn::manual_seed(7);
  net victim{};
  const auto untouched = values_of(victim);
  CHECK_THROWS_WITH_AS(io::load(path, victim), doctest::Contains("the data is corrupt"), dp::io_error);
  CHECK(values_of(victim) == untouched);
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2); }
  CHECK_THROWS_WITH_AS(io::load(path, victim), doctest::Contains("truncated"), dp::io_error);
  CHECK(values_of(victim) == untouched);
  std::filesystem::remove(path);
}

TEST_CASE("saving to a pipe, a device, a directory or an empty path is an io_error, and leaves it as it was") {
  // A save replaces the file by renaming a finished temporary over it; what is not a regular file
  // must not be replaced (a pipe or /dev/null would become a regular file).
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  const std::string fifo = path_of("fifo");
  std::filesystem::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  CHECK_THROWS_WITH_AS(io::save(fifo, par), doctest::Contains("is not a regular file (a device, a pipe or a socket)"),
                       dp::io_error);
  CHECK(std::filesystem::is_fifo(fifo));
  std::filesystem::remove(fifo);
  CHECK_THROWS_WITH_AS(io::save("/dev/null", par), doctest::Contains("dp: cannot write '/dev/null'"), dp::io_error);
  CHECK(std::filesystem::is_character_file("/dev/null"));
  const std::string dir = std::filesystem::temp_directory_path().string();
  CHECK_THROWS_WITH_AS(io::save(dir, par), doctest::Contains("it is a directory"), dp::io_error);
  CHECK(std::filesystem::is_directory(dir));
  CHECK_THROWS_WITH_AS(io::save("", par), doctest::Contains("empty path"), dp::io_error);
}

TEST_CASE("a trainer moved into a dp::parallel is refused by save and load: the parallel trains the model") {
  const std::string path = path_of("retired");
  nn::trainer<net> t{net{}};
  auto opt = dp::optim::sgd(t, {.lr = 0.1});
  dp::parallel<net> par{std::move(t), {dp::cpu(0), dp::cpu(1)}};
  io::save(path, par);
  // Loading into t changed nothing par trains; saving t wrote the weights of the moment it was moved.
  // NOLINTBEGIN(bugprone-use-after-move): the moved-from trainer is what these calls pass
  CHECK_THROWS_WITH_AS(io::load(path, t), doctest::Contains("pass the parallel (io::load(path, par))"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(io::save(path, t),
                       doctest::Contains(("io::save(" + path + ") of a trainer that was moved").c_str()),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, t, opt), doctest::Contains("moved into a dp::parallel"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)io::load_checkpoint(path, t, opt), doctest::Contains("moved into a dp::parallel"),
                       dp::value_error);
  // NOLINTEND(bugprone-use-after-move)
  CHECK_NOTHROW(io::load(path, par));
  std::filesystem::remove(path);
}

TEST_CASE("loading from a named pipe nobody writes to is refused at once, not a wait for a writer") {
  const std::string fifo = path_of("fifo_load");
  std::filesystem::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  nn::manual_seed(1);
  net m{};
  // fopen blocked in open() until a writer came, before the regular-file check could run.
  CHECK_THROWS_WITH_AS(io::load(fifo, m), doctest::Contains("is not a regular file (a device or a pipe)"),
                       dp::io_error);
  std::filesystem::remove(fifo);
}

TEST_CASE("a signal while a pipe's writer is slow does not end the read: it reads on to the end") {
  const std::string fifo = path_of("fifo_signal");
  std::filesystem::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  // A handler installed without SA_RESTART: the open waiting for a writer and the read waiting for
  // data return EINTR, which ended the read ("Interrupted system call").
  struct sigaction quiet {
  }, old{}, old_pipe{}, ignore{};
  quiet.sa_handler = [](int) {};
  sigemptyset(&quiet.sa_mask);
  REQUIRE(::sigaction(SIGUSR1, &quiet, &old) == 0);
  ignore.sa_handler = SIG_IGN;  // a reader that gave up: the writer's write fails, not the process
  REQUIRE(::sigaction(SIGPIPE, &ignore, &old_pipe) == 0);
  const pthread_t reader = ::pthread_self();
  std::thread writer([&] {
    using namespace std::chrono_literals;
    std::this_thread::sleep_for(200ms);
    ::pthread_kill(reader, SIGUSR1);  // the reader waits in open()
    // Without blocking: a reader that gave up leaves no one to open for (ENXIO), not a hang.
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; ++tries) {
      fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      std::this_thread::sleep_for(10ms);
    }
    if (fd >= 0) {
      (void)!::write(fd, "hel", 3);
      std::this_thread::sleep_for(200ms);
      ::pthread_kill(reader, SIGUSR1);  // the reader waits in read() for more
      std::this_thread::sleep_for(200ms);
      (void)!::write(fd, "lo", 2);
      ::close(fd);
    }
  });
  std::string got;
  CHECK_NOTHROW(got = dp::detail::read_bytes(fifo));
  writer.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  CHECK(got == "hello");
  std::filesystem::remove(fifo);
}

TEST_CASE("a save through a link replaces the link's target, and a replaced file keeps its permissions") {
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  const std::string target = path_of("link_target"), link = path_of("link");
  std::filesystem::remove(link);
  io::save(target, par);
  ::chmod(target.c_str(), 0600);  // a private checkpoint
  std::filesystem::create_symlink(target, link);
  par.edit([](net& m) { m.fc2.bias.assign(dp::full<float>({3}, 7.f)); });
  io::save(link, par);
  // The link is a link still, to a file that holds the new values (the rename replaced the link with
  // a file and left the target as it was).
  CHECK(std::filesystem::is_symlink(link));
  net back{};
  io::load(target, back);
  CHECK(back.fc2.bias.value().to_vector() == std::vector<float>(3, 7.f));
  struct stat st {};
  REQUIRE(::stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);  // was 0644 & ~umask: readable by everyone
  std::filesystem::remove(target);
  // A link to a file not made yet: the file is made where it points and the link stays (the rename
  // replaced the link with a file).
  io::save(link, par);
  CHECK(std::filesystem::is_symlink(link));
  net again{};
  io::load(target, again);
  CHECK(again.fc2.bias.value().to_vector() == std::vector<float>(3, 7.f));
  std::filesystem::remove(target);
  // A relative link resolves from the link's folder (not the working folder).
  const std::string relative = path_of("relative_link"), made = path_of("relative_target");
  std::filesystem::remove(relative);
  std::filesystem::remove(made);
  std::filesystem::create_symlink(std::filesystem::path(made).filename(), relative);
  io::save(relative, par);
  CHECK(std::filesystem::is_symlink(relative));
  CHECK(std::filesystem::is_regular_file(made));
  std::filesystem::remove(made);
  // A link to a link to nothing, or into a folder that does not exist: refused, naming the link.
  const std::string chain = path_of("chain");
  std::filesystem::remove(chain);
  std::filesystem::create_symlink(relative, chain);  // relative -> relative_target, which is gone
  CHECK_THROWS_WITH_AS(io::save(chain, par), doctest::Contains("itself a link to nothing"), dp::io_error);
  std::filesystem::remove(chain);
  std::filesystem::remove(relative);
  std::filesystem::create_symlink(path_of("no_such_folder") + "/x.safetensors", relative);
  CHECK_THROWS_WITH_AS(io::save(relative, par), doctest::Contains("in a folder that does not exist"), dp::io_error);
  std::filesystem::remove(relative);
  // A loop is refused, the link kept.
  const std::string loop = path_of("loop");
  std::filesystem::remove(loop);
  std::filesystem::create_symlink(std::filesystem::path(loop).filename(), loop);
  CHECK_THROWS_WITH_AS(io::save(loop, par), doctest::Contains("is a symbolic link whose target cannot be resolved"),
                       dp::io_error);
  CHECK(std::filesystem::is_symlink(loop));
  std::filesystem::remove(loop);
  std::filesystem::remove(link);
}

TEST_CASE("a replaced file keeps permission bits the umask takes from new files; a new file follows the umask") {
  const std::string path = path_of("modes");
  std::filesystem::remove(path);
  struct umask_scope {  // the process's umask, put back however the test ends
    mode_t old = ::umask(022);
    ~umask_scope() { ::umask(old); }
  } scope;
  const auto mode_of = [&] {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 0777;
  };
  dp::detail::atomic_write(path, "one");
  CHECK(mode_of() == 0644);     // new: 0644 less umask 022
  ::chmod(path.c_str(), 0664);  // shared with a group that may write it
  dp::detail::atomic_write(path, "two");
  CHECK(mode_of() == 0664);  // the temporary was made 0644 (umask 022), then given group write back
  CHECK(dp_test::bytes_of(path) == "two");
  ::chmod(path.c_str(), 0600);
  ::umask(0);
  dp::detail::atomic_write(path, "three");
  CHECK(mode_of() == 0600);  // never more open than the file it replaces, even with no umask
  std::filesystem::remove(path);
  ::umask(077);
  dp::detail::atomic_write(path, "four");
  CHECK(mode_of() == 0600);  // new: 0644 less umask 077
  std::filesystem::remove(path);
}
