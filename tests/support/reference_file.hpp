// Reads tests/reference/reference.txt: one tensor per line, "name dims values..." (dims as AxBxC,
// or "scalar"), written by tests/reference/make_reference.py with PyTorch.
#pragma once

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <dp/dp.hpp>

namespace dp_test {

struct ref_tensor {
  dp::shape shape;
  std::vector<double> values;
  template <class T>
  dp::tensor<T> as() const {
    std::vector<T> v(values.begin(), values.end());
    return dp::from_vector<T>(v, shape);
  }
};

inline std::map<std::string, ref_tensor> read_reference(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::map<std::string, ref_tensor> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    std::istringstream ls(line);
    std::string name, dims;
    ls >> name;
    ls >> dims;
    ref_tensor t;
    if (dims != "scalar") {
      std::istringstream ds(dims);
      std::string d;
      while (std::getline(ds, d, 'x')) {
        t.shape.push_back(std::stoll(d));
      }
    }
    double v;
    while (ls >> v) {
      t.values.push_back(v);
    }
    out[name] = t;
  }
  return out;
}

}  // namespace dp_test
