// Datasets and loaders.
#pragma once

#include <dp/data/csv.hpp>
#include <dp/data/dataset.hpp>
#include <dp/data/idx.hpp>
#include <dp/data/loader.hpp>
