# The two README commands. Both install missing Debian packages first (as root).
#   make test   build everything and run the tests (GPU and MPI tiers skip without GPUs)
#   make demo   build and run epg-demo on every local GPU under mpirun
BUILD ?= build
NVCC ?= $(shell command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CMAKE_ARGS ?=
JOBS ?= $(shell nproc)
DEMO_ARGS ?=
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export NCCL_NVLS_ENABLE := 0

.PHONY: deps build test demo clean

deps:
	@bash scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_CUDA_COMPILER=$(NVCC) $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 900

demo: build
	@bash scripts/demo.sh $(BUILD) $(DEMO_ARGS)

clean:
	rm -rf $(BUILD)
