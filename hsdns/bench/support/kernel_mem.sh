#!/bin/sh
# The kernel memory a command really costs, beside what bpftool estimates
# (`bytes_memlock`): runs the command in a memory cgroup of its own (v1
# here; the maps are charged to the cgroup of the process that creates
# them) and samples, every 200 ms, the cgroup's kernel memory and the
# system's accounted kmalloc caches (a non-preallocated hash map's
# elements come from kmalloc-cg-<size class>). Prints the peak of each
# sample above the figure before the command started, as JSON.
#
# Usage (root): hsdns/bench/support/kernel_mem.sh <command...>
# e.g. hsdns/bench/support/kernel_mem.sh target/release/bench_sync 5
set -eu
cg=/sys/fs/cgroup/memory/hsdns-kmem-$$
mkdir "$cg"
out=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; rmdir "$cg" 2>/dev/null || true; rm -f "$out"' EXIT

slab() { # active objects of a cache times its object size, in bytes
	awk -v n="$1" '$1 == n { print $2 * $4 }' /proc/slabinfo
}
meminfo() { awk -v k="$1:" '$1 == k { print $2 * 1024 }' /proc/meminfo; }
sample() {
	echo "$(cat "$cg/memory.kmem.usage_in_bytes") $(slab kmalloc-cg-128) \
$(slab kmalloc-cg-192) $(slab kmalloc-cg-256) $(meminfo VmallocUsed) \
$(meminfo Percpu) $(meminfo SUnreclaim)"
}
base=$(sample)
sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cg" "$@" >"$out" &
pid=$!
peak=$base
while kill -0 "$pid" 2>/dev/null; do
	peak=$(printf '%s\n%s\n' "$peak" "$(sample)" | awk '
		NR == 1 { for (i = 1; i <= NF; i++) m[i] = $i }
		NR == 2 { for (i = 1; i <= NF; i++) if ($i > m[i]) m[i] = $i
			s = ""; for (i = 1; i <= NF; i++) s = s (i > 1 ? " " : "") m[i]; print s }')
	sleep 0.2
done
wait "$pid" || { cat "$out"; exit 1; }
cat "$out"
echo "$base" "$peak" | awk '{
	split("memcg_kmem kmalloc_cg_128 kmalloc_cg_192 kmalloc_cg_256 vmalloc percpu sunreclaim", k)
	s = "{\"kernel_mem_peak_over_base_bytes\": {"
	for (i = 1; i <= 7; i++) s = s (i > 1 ? ", " : "") "\"" k[i] "\": " $(i + 7) - $i
	print s "}}" }'
