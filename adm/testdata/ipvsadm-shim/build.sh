#!/bin/sh
# Builds ipvsadm 1.31's own program over a stand-in for the kernel
# (fake.c), to produce the golden listings in adm/testdata from the
# fixtures there. Not part of lvsd, its build or its tests: the goldens are
# committed; this says how they were made.
#
#   usage: build.sh IPVSADM-1.31-SOURCE-DIR OUTPUT-DIR
#   needs: gcc, libpopt-dev
# then:  go test ./adm -run TestGolden -ipvsadm OUTPUT-DIR/ipvsadm-fake -update
set -eu
src=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
gcc -c -DHAVE_NET_IP_VS_H -I"$src/libipvs" -o "$out/libipvs.o" "$src/libipvs/libipvs.c"
# The table comes from fake.c: weaken libipvs's own getters; keep its sort.
w=""
for f in ipvs_init ipvs_getinfo ipvs_version ipvs_close ipvs_get_services ipvs_get_dests ipvs_get_service ipvs_get_timeout ipvs_info; do
	w="$w -W $f"
done
objcopy $w "$out/libipvs.o" "$out/libipvs_weak.o"
gcc -DVERSION='"1.31"' -DSCHEDULERS='"rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh"' -DPE_LIST='"sip"' \
	-Dfopen=fake_fopen -I"$src" -c "$src/ipvsadm.c" -o "$out/ipvsadm.o"
gcc -I"$src" -c "$src/config_stream.c" -o "$out/cs.o"
gcc -I"$src" -c "$src/dynamic_array.c" -o "$out/da.o"
gcc -I"$src" -c "$here/fake.c" -o "$out/fake.o"
gcc -o "$out/ipvsadm-fake" "$out/ipvsadm.o" "$out/cs.o" "$out/da.o" "$out/fake.o" "$out/libipvs_weak.o" -lpopt
