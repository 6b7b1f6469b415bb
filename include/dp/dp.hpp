// dp: tensors as fused expressions, models composed at compile time, data-parallel training.
// This header is the whole public entry point.
#pragma once

#include <dp/config.hpp>
#include <dp/core/counters.hpp>
#include <dp/core/device.hpp>
#include <dp/core/error.hpp>
#include <dp/core/memory.hpp>
#include <dp/core/shape.hpp>
#include <dp/core/tensor.hpp>
#include <dp/data.hpp>
#include <dp/dist.hpp>
#include <dp/exec/assign.hpp>
#include <dp/exec/cuda_graph.hpp>
#include <dp/exec/factory.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/exec/matmul.hpp>
#include <dp/exec/print.hpp>
#include <dp/exec/reduce.hpp>
#include <dp/exec/thread_pool.hpp>
#include <dp/expr/node.hpp>
#include <dp/expr/operators.hpp>
#include <dp/expr/random.hpp>
#include <dp/io.hpp>
#include <dp/nn.hpp>
