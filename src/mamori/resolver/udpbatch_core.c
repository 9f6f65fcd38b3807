/* Batched UDP datagram I/O: see udpbatch_core.h. Linux only (recvmmsg/sendmmsg). */
#include "udpbatch_core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define UB_SEND_CHUNK 64

int ub_batch_init(struct ub_batch *b, unsigned count, size_t size)
{
    memset(b, 0, sizeof(*b));
    if (count == 0 || count > UB_MAX_COUNT || size == 0 || size > UB_MAX_SIZE)
        return -EINVAL;
    b->bufs = malloc((size_t)count * size);
    b->hdrs = calloc(count, sizeof(*b->hdrs));
    b->iov = calloc(count, sizeof(*b->iov));
    b->addrs = calloc(count, sizeof(*b->addrs));
    if (!b->bufs || !b->hdrs || !b->iov || !b->addrs) {
        ub_batch_free(b);
        return -ENOMEM;
    }
    b->count = count;
    b->size = size;
    for (unsigned i = 0; i < count; i++) {
        b->iov[i].iov_base = b->bufs + (size_t)i * size;
        b->iov[i].iov_len = size;
        b->hdrs[i].msg_hdr.msg_name = &b->addrs[i];
        b->hdrs[i].msg_hdr.msg_namelen = sizeof(b->addrs[i]);
        b->hdrs[i].msg_hdr.msg_iov = &b->iov[i];
        b->hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

void ub_batch_free(struct ub_batch *b)
{
    free(b->bufs);
    free(b->hdrs);
    free(b->iov);
    free(b->addrs);
    free(b->ctrl);
    memset(b, 0, sizeof(*b));
}

int ub_batch_want_local(struct ub_batch *b)
{
    if (b->count == 0)
        return -EINVAL;
    if (b->ctrl)
        return 0;
    b->ctrl = calloc(b->count, UB_CTRL);
    if (!b->ctrl)
        return -ENOMEM;
    for (unsigned i = 0; i < b->count; i++) {
        b->hdrs[i].msg_hdr.msg_control = b->ctrl + (size_t)i * UB_CTRL;
        b->hdrs[i].msg_hdr.msg_controllen = UB_CTRL;
    }
    return 0;
}

int ub_local_of(const struct ub_batch *b, unsigned i, unsigned char out[UB_PKTINFO6])
{
    if (i >= b->received)
        return -EINVAL;
    if (!b->ctrl)
        return 0;
    /* a copy: the CMSG macros take a non-const header */
    struct msghdr h = b->hdrs[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(UB_PKTINFO4)) {
            memcpy(out, CMSG_DATA(c), UB_PKTINFO4);
            return UB_PKTINFO4;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(UB_PKTINFO6)) {
            memcpy(out, CMSG_DATA(c), UB_PKTINFO6);
            return UB_PKTINFO6;
        }
    }
    return 0;
}

int ub_out_local(struct ub_out *o, const void *pktinfo, size_t len)
{
    if (len == 0) {
        o->ctrllen = 0;
        return 0;
    }
    if (len != UB_PKTINFO4 && len != UB_PKTINFO6)
        return -EINVAL;
    memset(o->ctrl, 0, sizeof(o->ctrl));
    struct cmsghdr *c = (struct cmsghdr *)o->ctrl;
    c->cmsg_len = CMSG_LEN(len);
    if (len == UB_PKTINFO4) {
        struct in_pktinfo pi;
        memcpy(&pi, pktinfo, sizeof(pi));
        pi.ipi_ifindex = 0; /* the route back picks the interface; the source is spec_dst */
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    } else {
        struct in6_pktinfo pi6;
        memcpy(&pi6, pktinfo, sizeof(pi6));
        /* Asked at a multicast group (ff02::1): a group is no source; the unspecified
         * address lets the kernel pick a unicast one on that interface. */
        if (IN6_IS_ADDR_MULTICAST(&pi6.ipi6_addr))
            memset(&pi6.ipi6_addr, 0, sizeof(pi6.ipi6_addr));
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        memcpy(CMSG_DATA(c), &pi6, sizeof(pi6));
    }
    o->ctrllen = CMSG_SPACE(len);
    return 0;
}

int ub_recv(int fd, struct ub_batch *b)
{
    if (b->count == 0)
        return -EINVAL;
    /* The headers are set up once (ub_batch_init); a receive changes only the address
     * length, flags and length of the datagrams it fills: reset those. */
    for (unsigned i = 0; i < b->received; i++) {
        b->hdrs[i].msg_hdr.msg_namelen = sizeof(b->addrs[i]);
        b->hdrs[i].msg_hdr.msg_flags = 0;
        b->hdrs[i].msg_len = 0;
        if (b->ctrl)
            b->hdrs[i].msg_hdr.msg_controllen = UB_CTRL;
    }
    b->received = 0;
    for (;;) {
        int r = recvmmsg(fd, b->hdrs, b->count, MSG_DONTWAIT, NULL);
        if (r >= 0) {
            b->received = (unsigned)r;
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
}

int ub_send(int fd, const struct ub_out *out, unsigned n, unsigned *errors, int *last_errno)
{
    struct mmsghdr hdrs[UB_SEND_CHUNK];
    struct iovec iov[UB_SEND_CHUNK];
    unsigned i = 0;
    while (i < n) {
        unsigned k = n - i < UB_SEND_CHUNK ? n - i : UB_SEND_CHUNK;
        memset(hdrs, 0, sizeof(hdrs[0]) * k);
        for (unsigned j = 0; j < k; j++) {
            const struct ub_out *o = &out[i + j];
            iov[j].iov_base = (void *)o->data;
            iov[j].iov_len = o->len;
            hdrs[j].msg_hdr.msg_name = (void *)&o->addr;
            hdrs[j].msg_hdr.msg_namelen = o->addrlen;
            hdrs[j].msg_hdr.msg_iov = &iov[j];
            hdrs[j].msg_hdr.msg_iovlen = 1;
            if (o->ctrllen) {
                hdrs[j].msg_hdr.msg_control = (void *)o->ctrl;
                hdrs[j].msg_hdr.msg_controllen = o->ctrllen;
            }
        }
        int r = sendmmsg(fd, hdrs, k, MSG_DONTWAIT);
        if (r > 0) {
            i += (unsigned)r;
            continue; /* a short count: the next call reports what stopped it */
        }
        if (r == 0)
            return (int)i;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return (int)i;
        /* The first datagram of the chunk failed on its own (bad address, too big,
         * unreachable, no buffer space): drop it, as asyncio's UDP transport does
         * when sendto fails. */
        (*errors)++;
        *last_errno = errno;
        i++;
    }
    return (int)i;
}

int ub_out_to_sender(struct ub_out *o, const struct ub_batch *b, unsigned i, const void *data,
                     size_t len)
{
    if (i >= b->received)
        return -EINVAL;
    socklen_t alen = b->hdrs[i].msg_hdr.msg_namelen;
    if (alen > sizeof(o->addr))
        alen = sizeof(o->addr);
    memcpy(&o->addr, &b->addrs[i], alen);
    o->addrlen = alen;
    o->data = data;
    o->len = len;
    o->ctrllen = 0;
    if (b->ctrl) {
        unsigned char pi[UB_PKTINFO6];
        int n = ub_local_of(b, i, pi);
        if (n > 0)
            ub_out_local(o, pi, (size_t)n);
    }
    return 0;
}

int ub_addr_format(const struct sockaddr_storage *sa, char host[UB_HOSTLEN], int *port,
                   uint32_t *flowinfo, uint32_t *scope_id)
{
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        if (!inet_ntop(AF_INET, &s4->sin_addr, host, UB_HOSTLEN))
            return -EAFNOSUPPORT;
        *port = ntohs(s4->sin_port);
        *flowinfo = 0;
        *scope_id = 0;
        return AF_INET;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (!inet_ntop(AF_INET6, &s6->sin6_addr, host, UB_HOSTLEN))
            return -EAFNOSUPPORT;
        *port = ntohs(s6->sin6_port);
        *flowinfo = ntohl(s6->sin6_flowinfo);
        *scope_id = s6->sin6_scope_id;
        return AF_INET6;
    }
    return -EAFNOSUPPORT;
}

int ub_addr_parse(const char *host, size_t hostlen, long port, uint32_t flowinfo,
                  uint32_t scope_id, struct sockaddr_storage *out, socklen_t *outlen)
{
    char buf[UB_HOSTLEN];
    if (hostlen == 0 || hostlen >= sizeof(buf) || port < 0 || port > 65535)
        return -EINVAL;
    memcpy(buf, host, hostlen);
    buf[hostlen] = '\0';
    if (strlen(buf) != hostlen) /* an embedded NUL */
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (memchr(buf, ':', hostlen)) {
        char *pct = strchr(buf, '%'); /* "fe80::1%eth0": the scope comes from scope_id */
        if (pct)
            *pct = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET6, buf, &s6->sin6_addr) != 1)
            return -EINVAL;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        s6->sin6_flowinfo = htonl(flowinfo);
        s6->sin6_scope_id = scope_id;
        *outlen = sizeof(*s6);
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, buf, &s4->sin_addr) != 1)
        return -EINVAL;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *outlen = sizeof(*s4);
    return 0;
}
