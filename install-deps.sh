#!/bin/sh
# install-deps.sh: every Debian package moe needs to build, test and plot. Run as root.
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  build-essential cmake pkg-config \
  libopenmpi-dev openmpi-bin \
  libopenblas-dev libhwloc-dev \
  libprotobuf-c-dev protobuf-c-compiler \
  libjansson-dev \
  protobuf-compiler python3 python3-protobuf python3-torch \
  gnuplot-nox \
  slurm-wlm munge procps \
  iproute2 iputils-ping util-linux \
  clang libclang-rt-14-dev \
  dict-gcide
# python3-torch: tests/hf_torch_reference.py, the PyTorch model of test_hf_parity (docs/hf.md,
# "PyTorch parity"); the system interpreter /usr/bin/python3.
# slurm-wlm munge procps: cluster/local-slurm.sh (a single-node Slurm for the `cluster` tests).
# iproute2 iputils-ping util-linux: cluster/vcluster.sh (network-namespace nodes, tc, unshare).
# clang libclang-rt-14-dev: the fuzz build (clang 14 on Debian 12; libFuzzer and clang's ASan and
# UBSan runtimes; tests/fuzz/run.sh, docs/fuzzing.md).
# dict-gcide: the ~30 MB English corpus of examples/corpus/gcide.sh (docs/data.md), for the
# experiments that need more text than the default corpus.
