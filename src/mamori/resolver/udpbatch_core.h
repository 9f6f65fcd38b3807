/* Batched UDP datagram I/O: recvmmsg(2) / sendmmsg(2) over plain C buffers.
 *
 * The core of the `mamori.resolver.udpbatch` extension, kept free of Python so
 * that the fuzz harness (fuzz/udpbatch_fuzz.c) drives exactly this code.
 * System calls and buffers only: no DNS parsing here.
 */
#ifndef MAMORI_UDPBATCH_CORE_H
#define MAMORI_UDPBATCH_CORE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* struct mmsghdr, recvmmsg, sendmmsg; include this header first */
#endif

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define UB_MAX_COUNT 1024   /* datagrams per batch, upper bound */
#define UB_MAX_SIZE 65536   /* bytes per datagram buffer, upper bound */
#define UB_HOSTLEN 64       /* >= INET6_ADDRSTRLEN (46) */
/* Room for one IP_PKTINFO / IPV6_PKTINFO control message (the larger, IPv6's) and
 * what else the kernel may add on a socket with other options on. */
#define UB_CTRL 64
#define UB_PKTINFO4 12 /* sizeof(struct in_pktinfo) */
#define UB_PKTINFO6 20 /* sizeof(struct in6_pktinfo) */

struct ub_batch {
    unsigned count;                 /* datagrams per recvmmsg call */
    size_t size;                    /* bytes per datagram buffer */
    unsigned char *bufs;            /* count * size */
    struct mmsghdr *hdrs;           /* count */
    struct iovec *iov;              /* count */
    struct sockaddr_storage *addrs; /* count */
    unsigned char *ctrl;            /* count * UB_CTRL when local addresses are wanted, else NULL */
    unsigned received;              /* datagrams the last ub_recv returned */
};

/* One datagram to send: its bytes and its destination. */
struct ub_out {
    const void *data;
    size_t len;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    /* The local address to send from (a socket bound to 0.0.0.0 / ::): one
     * IP_PKTINFO / IPV6_PKTINFO control message, ctrllen 0 for none. */
    size_t ctrllen;
    _Alignas(struct cmsghdr) unsigned char ctrl[UB_CTRL]; /* read as a struct cmsghdr */
};

/* Allocate a batch of `count` buffers of `size` bytes each.
 * Returns 0, or -EINVAL (count or size 0 or above the bounds), -ENOMEM. */
int ub_batch_init(struct ub_batch *b, unsigned count, size_t size);
void ub_batch_free(struct ub_batch *b);

/* Also receive each datagram's local address (the socket has IP_PKTINFO /
 * IPV6_RECVPKTINFO on: it is bound to a wildcard address). Returns 0, or -ENOMEM,
 * -EINVAL (b not initialised). */
int ub_batch_want_local(struct ub_batch *b);

/* The local address datagram i of the last ub_recv was sent to, as the kernel's
 * pktinfo structure: struct in_pktinfo (UB_PKTINFO4 bytes) or struct in6_pktinfo
 * (UB_PKTINFO6) copied to out (room for UB_PKTINFO6). Returns its length, 0 when
 * there is none (local addresses not wanted, or the kernel gave none), or -EINVAL
 * (i outside the last receive). */
int ub_local_of(const struct ub_batch *b, unsigned i, unsigned char out[UB_PKTINFO6]);

/* Make *o leave from the local address in `pktinfo` (what ub_local_of gave: its length
 * says the family; len 0 clears it). For IPv4 the interface index is cleared so the
 * routing table still picks the interface; the source is ipi_spec_dst, the local
 * (unicast) address the query came to. For IPv6 a multicast address (a query to
 * ff02::1) becomes the unspecified one: the kernel picks a unicast source on the
 * interface. Returns 0, or -EINVAL for another length. */
int ub_out_local(struct ub_out *o, const void *pktinfo, size_t len);

/* Receive up to b->count datagrams without waiting (MSG_DONTWAIT).
 * Returns how many were received (0 when none was waiting: EAGAIN), or -errno.
 * Datagram i: bytes ub_data(b, i), length ub_len(b, i) (at most b->size; a longer
 * datagram is cut and ub_truncated(b, i) is true), sender b->addrs[i]. */
int ub_recv(int fd, struct ub_batch *b);

static inline const unsigned char *ub_data(const struct ub_batch *b, unsigned i)
{
    return b->bufs + (size_t)i * b->size;
}

static inline size_t ub_len(const struct ub_batch *b, unsigned i)
{
    size_t n = b->hdrs[i].msg_len;
    return n > b->size ? b->size : n;
}

static inline int ub_truncated(const struct ub_batch *b, unsigned i)
{
    return (b->hdrs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
}

/* Send out[0..n) with as few sendmmsg calls as the kernel allows.
 * Returns how many were consumed: sent, or dropped for an error of their own
 * (counted in *errors, the last errno in *last_errno); fewer than n only when the
 * socket would block (EAGAIN: send the rest when it is writable). */
int ub_send(int fd, const struct ub_out *out, unsigned n, unsigned *errors, int *last_errno);

/* Point *o at `len` bytes of `data`, addressed to the sender of datagram i of the
 * last ub_recv on b (its address as the kernel gave it: nothing formatted or parsed),
 * from the local address it was sent to when b wants local addresses.
 * Returns 0, or -EINVAL when i is not one of the datagrams that ub_recv returned. */
int ub_out_to_sender(struct ub_out *o, const struct ub_batch *b, unsigned i, const void *data,
                     size_t len);

/* Socket address <-> (numeric host, port, flowinfo, scope id), as Python's socket
 * module gives them for AF_INET ("a.b.c.d", port) and AF_INET6 (host, port,
 * flowinfo, scope_id). ub_addr_format returns the family (AF_INET / AF_INET6) or
 * -EAFNOSUPPORT; ub_addr_parse returns 0 or -EINVAL (not a numeric address, port
 * outside 0..65535). */
int ub_addr_format(const struct sockaddr_storage *sa, char host[UB_HOSTLEN], int *port,
                   uint32_t *flowinfo, uint32_t *scope_id);
int ub_addr_parse(const char *host, size_t hostlen, long port, uint32_t flowinfo,
                  uint32_t scope_id, struct sockaddr_storage *out, socklen_t *outlen);

#endif
