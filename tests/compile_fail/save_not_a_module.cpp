// dp::io saves and loads modules (and the trainers and dp::parallel holding them), not any struct.
// expect: dp: only a dp::nn::module (or a trainer or dp::parallel holding one) is saved or loaded
#include <dp/dp.hpp>

struct settings {
  int width = 4;
  float rate = 0.1F;
};

int main() { dp::io::save("settings.safetensors", settings{}); }
