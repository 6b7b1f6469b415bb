// Checkpoints and interop: safetensors, checkpoints, DLPack.
#pragma once

#include <dp/io/checkpoint.hpp>
#include <dp/io/dlpack.hpp>
#include <dp/io/json.hpp>
#include <dp/io/model.hpp>
#include <dp/io/safetensors.hpp>
