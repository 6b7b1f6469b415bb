// Data parallelism: communicators, sessions of processes and dp::parallel.
#pragma once

#include <dp/dist/bucket.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/dist/hierarchical.hpp>
#include <dp/dist/local.hpp>
#include <dp/dist/mpi.hpp>
#include <dp/dist/nccl.hpp>
#include <dp/dist/parallel.hpp>
#include <dp/dist/session.hpp>
#include <dp/dist/workers.hpp>
