#!/usr/bin/env bash
# Runs one MPI rank as if the job spanned two hosts: the first half of the ranks gets one NCCL
# host id, the second half another (NCCL_HOSTID), so NCCL sees two nodes on one machine: its
# NVLink (LSA) team is half the ranks and the two halves talk over its socket transport. Used
# by scripts/gpu-check.sh (stage twohosts) to run epg-demo with --domain-size 0 as a two-host
# job would. Usage: mpirun -np N scripts/as-two-hosts.sh <program> [args...]
set -euo pipefail
rank=${OMPI_COMM_WORLD_RANK:?run under the mpirun of Open MPI}
size=${OMPI_COMM_WORLD_SIZE:?run under the mpirun of Open MPI}
export NCCL_HOSTID="epgraph-host-$((rank * 2 / size))"
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo}
exec "$@"
