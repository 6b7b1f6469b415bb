// Modules, layers, losses, training and optimizers.
#pragma once

#include <dp/nn/autograd/derive.hpp>
#include <dp/nn/autograd/graph.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/functional.hpp>
#include <dp/nn/layers/activation.hpp>
#include <dp/nn/layers/conv.hpp>
#include <dp/nn/layers/dropout.hpp>
#include <dp/nn/layers/embedding.hpp>
#include <dp/nn/layers/linear.hpp>
#include <dp/nn/layers/norm.hpp>
#include <dp/nn/layers/pooling.hpp>
#include <dp/nn/layers/structure.hpp>
#include <dp/nn/loss.hpp>
#include <dp/nn/mode.hpp>
#include <dp/nn/module.hpp>
#include <dp/nn/parameter.hpp>
#include <dp/nn/sequential.hpp>
#include <dp/nn/trainer.hpp>
#include <dp/optim/adam.hpp>
#include <dp/optim/clip.hpp>
#include <dp/optim/schedule.hpp>
#include <dp/optim/sgd.hpp>
