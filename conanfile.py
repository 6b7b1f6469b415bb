"""Conan 2 recipe for dp, a header-only C++20 library.

The package is what `cmake --install` produces (headers, share/cmake/dp, share/pkgconfig/dp.pc), so
Conan consumers load the same dpConfig.cmake as everyone else: CMakeDeps generates nothing for dp
("cmake_find_mode" "none") and the toolchain puts share/cmake/dp on CMAKE_PREFIX_PATH. That config
finds OpenBLAS, zlib and threads on the system (nothing comes from Conan Center) and defines dp::dp
(with oneDNN and LIBXSMM when the consumer's machine has them: dp_HOST_GEMM) plus the components the package was
built with: the options cuda and mpi add dp::cuda (and dp::nccl when NCCL is found) and dp::mpi. The
components below describe the same targets to other generators (dp::dp there without oneDNN and LIBXSMM).
"""
import os
import re

from conan import ConanFile
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout
from conan.tools.files import load
from conan.tools.system.package_manager import Apt, Dnf


class DpConan(ConanFile):
    name = "dp"
    description = "Fused tensor expressions and data-parallel training in C++20 (header-only)"
    license = "Apache-2.0"
    topics = ("tensor", "deep-learning", "header-only", "cuda", "mpi")
    package_type = "header-library"
    # Only CMake's configure and install run; settings are cleared from the package id below.
    settings = "os", "arch", "compiler", "build_type"
    options = {"cuda": [True, False], "mpi": [True, False]}
    default_options = {"cuda": False, "mpi": False}
    exports_sources = "CMakeLists.txt", "cmake/*", "include/*", "LICENSE*", "COPYING*"
    no_copy_source = True

    def set_version(self):
        # One version for CMake, the package and pkg-config: the project() line.
        cmakelists = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        self.version = self.version or re.search(r"project\(dp VERSION ([0-9.]+)", cmakelists).group(1)

    def layout(self):
        cmake_layout(self)

    def package_id(self):
        # Headers and CMake files do not depend on the compiler; the options decide which feature
        # targets ship, so they stay in the id.
        self.info.settings.clear()

    def system_requirements(self):
        # Checked, not installed, unless tools.system.package_manager:mode=install.
        Apt(self).install(["libopenblas-dev", "zlib1g-dev"] + (["libopenmpi-dev"] if self.options.mpi else []))
        Dnf(self).install(["openblas-devel", "zlib-devel"] + (["openmpi-devel"] if self.options.mpi else []))

    def generate(self):
        tc = CMakeToolchain(self)
        for var in ("DP_BUILD_TESTS", "DP_BUILD_EXAMPLES", "DP_BUILD_BENCHMARKS"):
            tc.cache_variables[var] = False
        tc.cache_variables["DP_INSTALL"] = True
        # ON fails the build when the dependency is missing instead of shipping without the target.
        tc.cache_variables["DP_WITH_CUDA"] = "ON" if self.options.cuda else "OFF"
        tc.cache_variables["DP_WITH_MPI"] = "ON" if self.options.mpi else "OFF"
        tc.generate()

    def package(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.install()

    def package_info(self):
        cmake_dir = os.path.join("share", "cmake", "dp")
        self.cpp_info.set_property("cmake_file_name", "dp")
        self.cpp_info.set_property("cmake_target_name", "dp::dp")
        self.cpp_info.set_property("cmake_find_mode", "none")  # use the shipped dpConfig.cmake
        self.cpp_info.set_property("pkg_config_name", "dp")

        core = self.cpp_info.components["dp"]
        core.set_property("cmake_target_name", "dp::dp")
        core.set_property("pkg_config_name", "dp")
        core.includedirs = ["include"]
        core.libdirs = []
        core.bindirs = []
        core.builddirs = [cmake_dir]
        core.system_libs = ["openblas", "z", "pthread", "dl"]
        core.cxxflags = ["-fno-trapping-math", "-fno-math-errno"]

        # The feature components are those whose targets the install produced (dp::nccl needs NCCL).
        def shipped(component):
            return os.path.exists(os.path.join(self.package_folder, cmake_dir, f"dp{component.capitalize()}Targets.cmake"))

        features = {
            "cuda": {"requires": ["dp"], "system_libs": ["cudart", "cublas"], "defines": []},
            "nccl": {"requires": ["cuda"], "system_libs": ["nccl"], "defines": ["DP_HAS_NCCL=1"]},
            "mpi": {"requires": ["dp"], "system_libs": ["mpi"], "defines": ["DP_HAS_MPI=1"]},
        }
        for component, info in features.items():
            if shipped(component):
                comp = self.cpp_info.components[component]
                comp.set_property("cmake_target_name", f"dp::{component}")
                comp.set_property("pkg_config_name", f"dp-{component}")
                comp.requires = info["requires"]
                comp.system_libs = info["system_libs"]
                comp.defines = info["defines"]
                comp.includedirs = []
                comp.libdirs = []
                comp.bindirs = []
