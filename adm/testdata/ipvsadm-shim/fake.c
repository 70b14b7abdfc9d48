/* A stand-in for the kernel under ipvsadm 1.31's own print code, for making
 * the golden listings of adm/testdata (see build.sh): the table comes from
 * a fixture file ($IPVS_FIXTURE), connections from $IPVS_CONN. Test
 * tooling written for lvsd; not built into lvsd. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "libipvs/libipvs.h"

struct ip_vs_getinfo ipvs_info;
static struct ip_vs_get_services *svcs;
static struct ip_vs_get_dests *dests[256];
static ipvs_timeout_t tmo;

static void load(void) {
	if (svcs) return;
	FILE *f = fopen(getenv("IPVS_FIXTURE"), "r");
	if (!f) { perror("fixture"); exit(9); }
	svcs = calloc(1, sizeof(*svcs) + 256 * sizeof(ipvs_service_entry_t));
	char line[1024];
	int cur = -1;
	while (fgets(line, sizeof line, f)) {
		char a[64], m[64], sched[32], pe[32];
		unsigned long long st[10];
		if (line[0] == 'S') {
			ipvs_service_entry_t *e = &svcs->entrytable[++cur];
			unsigned af, proto, port, fw, flags, tmo_;
			sscanf(line + 2, "%u %u %63s %u %u %31s %u %u %63s %31s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			       &af, &proto, a, &port, &fw, sched, &flags, &tmo_, m, pe,
			       &st[0], &st[1], &st[2], &st[3], &st[4], &st[5], &st[6], &st[7], &st[8], &st[9]);
			e->af = af; e->protocol = proto; e->port = htons(port); e->fwmark = fw;
			inet_pton(af, a, &e->addr); e->__addr_v4 = e->addr.ip;
			strcpy(e->sched_name, sched); e->flags = flags; e->timeout = tmo_;
			if (af == AF_INET) e->netmask = inet_addr(m); else e->netmask = atoi(m);
			if (strcmp(pe, "-")) strcpy(e->pe_name, pe);
			memcpy(&e->stats64, st, sizeof st);
			svcs->num_services = cur + 1;
			dests[cur] = calloc(1, sizeof(struct ip_vs_get_dests) + 256 * sizeof(ipvs_dest_entry_t));
		} else if (line[0] == 'D') {
			struct ip_vs_get_dests *d = dests[cur];
			ipvs_dest_entry_t *e = &d->entrytable[d->num_dests++];
			unsigned af, port, fwd, x, y, ac, ic, pc; int w;
			sscanf(line + 2, "%u %63s %u %u %d %u %u %u %u %u %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			       &af, a, &port, &fwd, &w, &x, &y, &ac, &ic, &pc,
			       &st[0], &st[1], &st[2], &st[3], &st[4], &st[5], &st[6], &st[7], &st[8], &st[9]);
			e->af = af; inet_pton(af, a, &e->addr); e->__addr_v4 = e->addr.ip; e->port = htons(port);
			e->conn_flags = fwd; e->weight = w; e->u_threshold = x; e->l_threshold = y;
			e->activeconns = ac; e->inactconns = ic; e->persistconns = pc;
			memcpy(&e->stats64, st, sizeof st);
			svcs->entrytable[cur].num_dests = d->num_dests;
		} else if (line[0] == 'T') {
			sscanf(line + 2, "%d %d %d", &tmo.tcp_timeout, &tmo.tcp_fin_timeout, &tmo.udp_timeout);
		}
	}
	fclose(f);
}

int ipvs_init(void) { ipvs_info.version = 0x010201; ipvs_info.size = 4096; ipvs_info.num_services = 0; return 0; }
int ipvs_getinfo(void) { return 0; }
unsigned int ipvs_version(void) { return ipvs_info.version; }
void ipvs_close(void) {}

struct ip_vs_get_services *ipvs_get_services(void) {
	load();
	size_t n = sizeof(*svcs) + svcs->num_services * sizeof(ipvs_service_entry_t);
	struct ip_vs_get_services *c = malloc(n);
	memcpy(c, svcs, n);
	return c;
}

struct ip_vs_get_dests *ipvs_get_dests(ipvs_service_entry_t *svc) {
	load();
	for (unsigned i = 0; i < svcs->num_services; i++) {
		ipvs_service_entry_t *e = &svcs->entrytable[i];
		if (e->fwmark == svc->fwmark && e->af == svc->af && e->protocol == svc->protocol &&
		    !memcmp(&e->addr, &svc->addr, sizeof e->addr) && e->port == svc->port) {
			size_t n = sizeof(struct ip_vs_get_dests) + dests[i]->num_dests * sizeof(ipvs_dest_entry_t);
			struct ip_vs_get_dests *c = malloc(n);
			memcpy(c, dests[i], n);
			return c;
		}
	}
	return NULL;
}

ipvs_service_entry_t *ipvs_get_service(__u32 fwmark, __u16 af, __u16 protocol, union nf_inet_addr addr, __u16 port) {
	load();
	for (unsigned i = 0; i < svcs->num_services; i++) {
		ipvs_service_entry_t *e = &svcs->entrytable[i];
		if (e->fwmark == fwmark && (fwmark || (e->af == af && e->protocol == protocol &&
		    !memcmp(&e->addr, &addr, sizeof addr) && e->port == port))) {
			ipvs_service_entry_t *c = malloc(sizeof *c);
			*c = *e;
			return c;
		}
	}
	return NULL;
}

ipvs_timeout_t *ipvs_get_timeout(void) {
	load();
	ipvs_timeout_t *c = malloc(sizeof *c);
	*c = tmo;
	return c;
}

FILE *fake_fopen(const char *path, const char *mode) {
	if (!strcmp(path, "/proc/net/ip_vs_conn")) path = getenv("IPVS_CONN");
	return fopen(path, mode);
}
