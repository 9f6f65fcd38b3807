/* libFuzzer harness for the batched UDP I/O core (src/mamori/resolver/udpbatch_core.c).
 *
 * Each input drives one round: a batch of some count and buffer size (also out of
 * bounds), datagrams of arbitrary sizes sent with ub_send to addresses parsed by
 * ub_addr_parse from arbitrary bytes, then drained with ub_recv and checked.
 * Traffic stays on loopback: an address that parses to anything but 127.0.0.0/8
 * or ::1 is parsed (and round-tripped through ub_addr_format) but the datagram
 * goes to the harness's own receiver instead. Local addresses (IP_PKTINFO, what a
 * wildcard socket answers from) are received when the input asks, and arbitrary ones
 * given to ub_out_local: a source the host does not have is refused by the kernel
 * (counted); the IPv6 interface index is kept to 0 or 1 (loopback) so nothing is
 * routed off the host. Built and run by scripts/fuzz-native.sh under AddressSanitizer
 * and UBSan.
 */
#include "udpbatch_core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int rx4 = -1, tx4 = -1, rx6 = -1, tx6 = -1;
static struct sockaddr_storage rx4addr, rx6addr;
static socklen_t rx4len, rx6len;
static unsigned char payload[70000];
static unsigned char payload_sink[70000];

static int udp(int family, struct sockaddr_storage *addr, socklen_t *len)
{
    int s = socket(family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -1;
    memset(addr, 0, sizeof(*addr));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        *len = sizeof(*a);
    }
    if (bind(s, (struct sockaddr *)addr, *len) < 0 || getsockname(s, (struct sockaddr *)addr, len) < 0) {
        close(s);
        return -1;
    }
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sockaddr_storage ignored;
    socklen_t ignored_len;
    rx4 = udp(AF_INET, &rx4addr, &rx4len);
    tx4 = udp(AF_INET, &ignored, &ignored_len);
    rx6 = udp(AF_INET6, &rx6addr, &rx6len); /* may fail: no IPv6 loopback */
    tx6 = udp(AF_INET6, &ignored, &ignored_len);
    if (rx4 < 0 || tx4 < 0)
        abort();
    int on = 1;
    if (setsockopt(rx4, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) < 0)
        abort();
    if (rx6 >= 0 && setsockopt(rx6, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) < 0)
        abort();
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (unsigned char)(i * 131 + 7);
    return 0;
}

struct input {
    const uint8_t *p;
    size_t n;
};

static uint32_t take(struct input *in, unsigned bytes)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v <<= 8;
        if (in->n) {
            v |= *in->p++;
            in->n--;
        }
    }
    return v;
}

static int loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

static void check_round_trip(const struct sockaddr_storage *sa)
{
    char host[UB_HOSTLEN];
    int port;
    uint32_t flowinfo, scope;
    int fam = ub_addr_format(sa, host, &port, &flowinfo, &scope);
    if (fam < 0)
        abort(); /* ub_addr_parse only makes AF_INET / AF_INET6 */
    struct sockaddr_storage again;
    socklen_t len;
    if (ub_addr_parse(host, strlen(host), port, flowinfo, scope, &again, &len) != 0)
        abort();
    if (memcmp(sa, &again, len) != 0)
        abort();
}

#define MAX_OUT 200

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    unsigned count = take(&in, 2) % (UB_MAX_COUNT + 8);       /* 0 and > max are refused */
    size_t bufsize = take(&in, 3) % (UB_MAX_SIZE + 64);        /* likewise */
    struct ub_batch b;
    int r = ub_batch_init(&b, count, bufsize);
    int valid = count >= 1 && count <= UB_MAX_COUNT && bufsize >= 1 && bufsize <= UB_MAX_SIZE;
    if (r != (valid ? 0 : -EINVAL) && r != -ENOMEM)
        abort();
    if (r != 0) {
        if (ub_recv(rx4, &b) != -EINVAL) /* an empty batch never touches memory */
            abort();
        ub_batch_free(&b);
        return 0;
    }

    int want_local = take(&in, 1) & 1;
    if (want_local) {
        int wl = ub_batch_want_local(&b);
        if (wl != 0 && wl != -ENOMEM)
            abort();
        want_local = wl == 0;
    }

    static struct ub_out out[MAX_OUT];
    unsigned n = take(&in, 1) % MAX_OUT;
    unsigned v6 = take(&in, 1) & 1 && tx6 >= 0;
    int tx = v6 ? tx6 : tx4;
    for (unsigned i = 0; i < n; i++) {
        size_t len = take(&in, 2);
        if (take(&in, 1) == 0xff)
            len += 65536; /* beyond the largest UDP datagram: EMSGSIZE, counted */
        unsigned hostlen = take(&in, 1) % 72;
        char host[80];
        for (unsigned k = 0; k < hostlen; k++)
            host[k] = (char)take(&in, 1);
        long port = (long)(int32_t)take(&in, 4);
        uint32_t flowinfo = take(&in, 4), scope = take(&in, 4);
        struct ub_out *o = &out[i];
        o->data = payload;
        o->len = len;
        o->ctrllen = 0;
        unsigned pilen = take(&in, 1);
        if (pilen < 26) { /* a local address to send from: arbitrary bytes, any length */
            unsigned char pi[32];
            for (unsigned k = 0; k < pilen; k++)
                pi[k] = (unsigned char)take(&in, 1);
            if (pilen == UB_PKTINFO6) { /* in6_pktinfo: ifindex 0 or loopback only */
                unsigned int ifindex = pi[16] & 1;
                memcpy(pi + 16, &ifindex, sizeof(ifindex));
            }
            int lr = ub_out_local(o, pi, pilen);
            int ok = pilen == 0 || pilen == UB_PKTINFO4 || pilen == UB_PKTINFO6;
            if (lr != (ok ? 0 : -EINVAL) || (ok && pilen && o->ctrllen > UB_CTRL))
                abort();
        }
        if (ub_addr_parse(host, hostlen, port, flowinfo, scope, &o->addr, &o->addrlen) == 0) {
            check_round_trip(&o->addr);
            if (loopback(&o->addr))
                continue; /* sent where it says: loopback only */
        }
        if (v6 && rx6 >= 0) {
            memcpy(&o->addr, &rx6addr, rx6len);
            o->addrlen = rx6len;
        } else {
            memcpy(&o->addr, &rx4addr, rx4len);
            o->addrlen = rx4len;
        }
    }
    unsigned errors = 0;
    int err = 0;
    int sent = ub_send(tx, out, n, &errors, &err);
    if (sent < 0 || (unsigned)sent > n || errors > (unsigned)sent)
        abort();

    int rx = v6 && rx6 >= 0 ? rx6 : rx4;
    for (int round = 0; round < 64; round++) {
        int got = ub_recv(rx, &b);
        if (got < 0 || (unsigned)got > b.count)
            abort();
        if (got == 0)
            break;
        for (int i = 0; i < got; i++) {
            size_t len = ub_len(&b, (unsigned)i);
            if (len > b.size)
                abort();
            if (memcmp(ub_data(&b, (unsigned)i), payload, len) != 0)
                abort();
            if (ub_truncated(&b, (unsigned)i) && len != b.size) /* cut to the buffer */
                abort();
            check_round_trip(&b.addrs[i]);
            unsigned char pi[UB_PKTINFO6];
            int pl = ub_local_of(&b, (unsigned)i, pi);
            int fam = b.addrs[i].ss_family;
            if (want_local ? pl != (fam == AF_INET ? UB_PKTINFO4 : UB_PKTINFO6) : pl != 0)
                abort(); /* the receivers have IP_PKTINFO / IPV6_RECVPKTINFO on */
            if (pl == UB_PKTINFO4) {
                struct in_pktinfo p4;
                memcpy(&p4, pi, sizeof(p4));
                if (ntohl(p4.ipi_addr.s_addr) >> 24 != 127)
                    abort(); /* came to the loopback receiver */
            }
        }
        if (ub_local_of(&b, (unsigned)got, (unsigned char[UB_PKTINFO6]){0}) != -EINVAL)
            abort();
        /* Answer every datagram to its sender (the harness's own loopback socket) at
         * the address the kernel gave, as the server does; then drain those answers. */
        static struct ub_out back[UB_MAX_COUNT];
        for (int i = 0; i < got; i++) {
            size_t len = ub_len(&b, (unsigned)i);
            if (ub_out_to_sender(&back[i], &b, (unsigned)i, ub_data(&b, (unsigned)i), len) != 0)
                abort();
            int has_local = back[i].ctrllen != 0;
            if (!loopback(&back[i].addr) || has_local != want_local)
                abort();
        }
        if (ub_out_to_sender(&back[0], &b, (unsigned)got, payload, 1) != -EINVAL)
            abort(); /* past what the last receive returned */
        unsigned back_errors = 0;
        int back_err = 0;
        int answered = ub_send(rx, back, (unsigned)got, &back_errors, &back_err);
        if (answered < 0 || answered > got)
            abort();
        for (int k = 0; k < answered; k++) {
            if (recv(tx, payload_sink, sizeof(payload_sink), MSG_DONTWAIT) < 0)
                break;
        }
    }
    if (ub_out_to_sender(&out[0], &b, b.received, payload, 1) != -EINVAL)
        abort();
    ub_batch_free(&b);
    return 0;
}
