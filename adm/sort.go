package adm

import "net/netip"

// The comparisons are ipvsadm's ipvs_cmp_services and ipvs_cmp_dests
// (libipvs), differences of unsigned values read as a C int: addresses
// more than 2^31 apart compare the "wrong" way round (10.0.0.1 sorts after
// 192.168.0.1), and lvsd keeps that so that its listings equal ipvsadm's.

func diff32(a, b uint32) int { return int(int32(a - b)) }

// cmpAddr compares as ipvsadm: IPv4 as one 32-bit word, IPv6 word by word.
func cmpAddr(a, b netip.Addr) int {
	if a.Is4() && b.Is4() {
		x, y := a.As4(), b.As4()
		return diff32(be32(x[:]), be32(y[:]))
	}
	x, y := a.As16(), b.As16()
	for i := 0; i < 16; i += 4 {
		if r := diff32(be32(x[i:]), be32(y[i:])); r != 0 {
			return r
		}
	}
	return 0
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// af is the address family number ipvsadm sorts by: AF_INET before AF_INET6.
func af(a netip.Addr) int {
	if a.Is6() {
		return 10
	}
	return 2
}

func cmpServices(s1, s2 *Service) int {
	if r := diff32(s1.Mark, s2.Mark); r != 0 {
		return r
	}
	if r := af(s1.Addr) - af(s2.Addr); r != 0 {
		return r
	}
	if r := protoNum(s1.Proto) - protoNum(s2.Proto); r != 0 {
		return r
	}
	if s1.Mark == 0 { // IPVS keeps no address in a firewall-mark service
		if r := cmpAddr(s1.Addr, s2.Addr); r != 0 {
			return r
		}
		return int(s1.Port) - int(s2.Port)
	}
	return 0
}

func cmpDests(d1, d2 *Dest) int {
	if r := cmpAddr(d1.Addr, d2.Addr); r != 0 {
		return r
	}
	return int(d1.Port) - int(d2.Port)
}

// msort sorts as glibc's qsort does for tables of this size (msort.c: a
// top-down merge sort, the left run first on ties), so that a comparison
// that is not a total order (above) gives ipvsadm's order too.
func msort[T any](s []T, cmp func(a, b T) int) {
	if len(s) < 2 {
		return
	}
	tmp := make([]T, len(s))
	msortRec(s, tmp, cmp)
}

func msortRec[T any](s, tmp []T, cmp func(a, b T) int) {
	n := len(s)
	if n <= 1 {
		return
	}
	n1 := n / 2
	b1, b2 := s[:n1], s[n1:]
	msortRec(b1, tmp, cmp)
	msortRec(b2, tmp, cmp)
	i, j, k := 0, 0, 0
	for i < len(b1) && j < len(b2) {
		if cmp(b1[i], b2[j]) <= 0 {
			tmp[k] = b1[i]
			i++
		} else {
			tmp[k] = b2[j]
			j++
		}
		k++
	}
	k += copy(tmp[k:], b1[i:])
	copy(s, tmp[:k])
}
