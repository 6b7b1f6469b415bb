// Data parallelism: communicators, sessions of processes and dp::parallel.
#pragma once

#include <dp/dist/any_communicator.hpp>
#include <dp/dist/bucket.hpp>
#include <dp/dist/buffer_sync.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/dist/gradient_reducer.hpp>
#include <dp/dist/hierarchical.hpp>
#include <dp/dist/local.hpp>
#include <dp/dist/mpi.hpp>
#include <dp/dist/nccl.hpp>
#include <dp/dist/parallel.hpp>
#include <dp/dist/ranks.hpp>
#include <dp/dist/replica_group.hpp>
#include <dp/dist/scatter.hpp>
#include <dp/dist/session.hpp>
#include <dp/dist/workers.hpp>
