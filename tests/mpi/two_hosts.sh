#!/usr/bin/env bash
# Two hosts on one machine: two network namespaces joined by a veth pair, each with its own address,
# and Open MPI between them over TCP only (no shared memory). Runs one mpirun command with one rank
# on each host, then removes the namespaces. Skips (exit 0, with the reason) where namespaces
# cannot be made (not root, no iproute2, no permission).
#   two_hosts.sh PROGRAM [ARGS...]     e.g. two_hosts.sh dp_test_mpi -tc="N ranks*"
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: two_hosts.sh PROGRAM [ARGS...]" >&2; exit 2; }
id=$$
a=dp_a_$id b=dp_b_$id
net=10.231.$((id % 200 + 20))
skip() { echo "two_hosts: SKIPPED: $1"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
ip netns add "$a" 2>/dev/null || skip "cannot create a network namespace here ($(ip netns add "$a" 2>&1))"
agent=$(mktemp /tmp/dp_rsh_XXXXXX)
cleanup() {
  ip netns pids "$a" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns pids "$b" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$a" 2>/dev/null
  ip netns del "$b" 2>/dev/null
  rm -f "$agent"
}
trap cleanup EXIT
set -e
ip netns add "$b"
ip link add "va$id" type veth peer name "vb$id"
ip link set "va$id" netns "$a"
ip link set "vb$id" netns "$b"
ip -n "$a" addr add "$net.1/24" dev "va$id"
ip -n "$b" addr add "$net.2/24" dev "vb$id"
for ns in "$a" "$b"; do
  ip -n "$ns" link set lo up
done
ip -n "$a" link set "va$id" up
ip -n "$b" link set "vb$id" up
# Open MPI starts its daemon on the other host through this "ssh": it runs the command line in the
# namespace that owns the address it is given.
cat >"$agent" <<AGENT
#!/bin/sh
host=\$1
shift
case "\$host" in
  $net.1) ns=$a ;;
  $net.2) ns=$b ;;
  *) echo "two_hosts: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
AGENT
chmod +x "$agent"
set +e
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "two_hosts: $net.1 ($a) and $net.2 ($b), one rank each, Open MPI over TCP"
timeout 120 ip netns exec "$a" mpirun -np 2 --host "$net.1,$net.2" --bind-to none \
  --mca plm_rsh_agent "$agent" --mca btl tcp,self --mca btl_tcp_if_include "$net.0/24" \
  --mca oob_tcp_if_include "$net.0/24" --mca orte_abort_on_non_zero_status 0 "$@"
rc=$?
echo "two_hosts: mpirun exited with $rc"
exit $rc
