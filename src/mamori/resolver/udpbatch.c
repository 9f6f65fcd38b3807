/* mamori.resolver.udpbatch: Python binding of udpbatch_core (recvmmsg/sendmmsg).
 *
 * Batch(count, size, local=None)
 *   .recv(fd) -> list[(bytes, addr)]     whatever is waiting, at most `count`
 *                                        datagrams; [] when none (never waits)
 *   .send(fd, msgs, start=0) -> int      sends msgs[start:], a list of
 *                                        (bytes, addr) or (bytes, addr, local),
 *                                        local as recv's addresses carry it (the
 *                                        answer leaves from there); returns the
 *                                        index of the first message not yet sent
 *                                        (len(msgs) when all went; less when the
 *                                        socket would block)
 *   .answer(fd, answers, start=0) -> int answers[i] (bytes, or None: no answer)
 *                                        goes to the sender of datagram i of the
 *                                        last recv, at the address the kernel
 *                                        gave (nothing formatted or parsed),
 *                                        from the local address it came to;
 *                                        returns the index of the first answer
 *                                        not yet sent, as send does
 *   .truncated, .send_errors, .last_send_errno   counters
 *
 * addr is what Python's socket module uses: ("a.b.c.d", port) or
 * (host, port, flowinfo, scope_id). With `local` (a class: a tuple subclass whose
 * instances take attributes; for a socket bound to 0.0.0.0 / :: with IP_PKTINFO /
 * IPV6_RECVPKTINFO on), recv's addresses are local(addr) with the attribute `local`
 * set to the local address the datagram came to: struct in_pktinfo (12 bytes) or
 * in6_pktinfo (20) as the kernel gave it, b"" when none. The address
 * objects of recent senders are kept (ADDR_SLOTS, by address): a client asking again
 * gets the same host string (its hash already computed for the client table) and,
 * from the same port (and to the same local address), the same tuple (local object),
 * instead of formatting and allocating them per datagram.
 * Errors: ValueError for a bad count/size (or, for answer, more answers than
 * datagrams received, a start out of range), OSError for a receive error other
 * than EAGAIN, TypeError for a malformed message tuple or an answer that is
 * neither bytes nor None. A message whose address does not parse, or that the
 * kernel refuses on its own, is dropped and counted in send_errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "udpbatch_core.h"

#define ADDR_SLOTS 512 /* a power of two */

/* The objects made for one sender address: host string (by address) and the last
 * (host, port[, flowinfo, scope_id]) tuple made with it. */
struct addr_slot {
    sa_family_t family; /* 0: empty */
    unsigned char ip[16];
    uint16_t port;
    uint32_t flowinfo, scope_id;
    PyObject *host;
    PyObject *tuple;
    /* with `local`: the local(tuple) object last made for this slot, the tuple it was
     * made from (a reference: compared by identity) and its local address */
    PyObject *laddr;
    PyObject *laddr_of;
    int lalen;
    unsigned char lpi[UB_PKTINFO6];
};

typedef struct {
    PyObject_HEAD
    struct ub_batch b;
    struct addr_slot *slots; /* ADDR_SLOTS, allocated with the first datagram */
    PyObject *local;         /* the class of local-address-carrying addresses, or NULL */
    struct ub_out *out;
    Py_ssize_t outcap;
    unsigned long long truncated;
    unsigned long long send_errors;
    int last_send_errno;
} BatchObject;

static void clear_slots(BatchObject *self);

static int Batch_init(BatchObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"count", "size", "local", NULL};
    unsigned int count;
    Py_ssize_t size;
    PyObject *local = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "In|O", kwlist, &count, &size, &local))
        return -1;
    if (local != Py_None && !(PyType_Check(local) &&
                              PyType_IsSubtype((PyTypeObject *)local, &PyTuple_Type))) {
        PyErr_SetString(PyExc_TypeError, "local must be None or a subclass of tuple");
        return -1;
    }
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "size must be positive");
        return -1;
    }
    ub_batch_free(&self->b);
    int r = ub_batch_init(&self->b, count, (size_t)size);
    if (r == -ENOMEM) {
        PyErr_NoMemory();
        return -1;
    }
    if (r < 0) {
        PyErr_Format(PyExc_ValueError, "count must be 1..%d and size 1..%d", UB_MAX_COUNT,
                     UB_MAX_SIZE);
        return -1;
    }
    clear_slots(self);
    Py_CLEAR(self->local);
    if (local != Py_None) {
        if (ub_batch_want_local(&self->b) < 0) {
            PyErr_NoMemory();
            return -1;
        }
        self->local = Py_NewRef(local);
    }
    return 0;
}

static void clear_slots(BatchObject *self)
{
    if (!self->slots)
        return;
    for (unsigned i = 0; i < ADDR_SLOTS; i++) {
        Py_CLEAR(self->slots[i].host);
        Py_CLEAR(self->slots[i].tuple);
        Py_CLEAR(self->slots[i].laddr);
        Py_CLEAR(self->slots[i].laddr_of);
    }
    free(self->slots);
    self->slots = NULL;
}

static void Batch_dealloc(BatchObject *self)
{
    clear_slots(self);
    Py_CLEAR(self->local);
    ub_batch_free(&self->b);
    free(self->out);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *build_addr(const struct sockaddr_storage *sa)
{
    char host[UB_HOSTLEN];
    int port;
    uint32_t flowinfo, scope_id;
    int family = ub_addr_format(sa, host, &port, &flowinfo, &scope_id);
    if (family == AF_INET)
        return Py_BuildValue("(si)", host, port);
    if (family == AF_INET6)
        return Py_BuildValue("(siII)", host, port, (unsigned int)flowinfo,
                             (unsigned int)scope_id);
    Py_RETURN_NONE;
}

/* The address tuple of a sender: from its slot when the same address asked last
 * from there (the same tuple, or a new one around the kept host string). */
static PyObject *make_addr(BatchObject *self, const struct sockaddr_storage *sa,
                           struct addr_slot **slot_out)
{
    *slot_out = NULL;
    struct addr_slot key;
    memset(&key, 0, sizeof(key));
    uint32_t h;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memcpy(key.ip, &s4->sin_addr, 4);
        key.port = ntohs(s4->sin_port);
        uint32_t a;
        memcpy(&a, &s4->sin_addr, 4);
        h = a * 2654435761u;
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(key.ip, &s6->sin6_addr, 16);
        key.port = ntohs(s6->sin6_port);
        key.flowinfo = ntohl(s6->sin6_flowinfo);
        key.scope_id = s6->sin6_scope_id;
        h = 2166136261u;
        for (int k = 0; k < 16; k++)
            h = (h ^ key.ip[k]) * 16777619u;
    } else {
        return build_addr(sa);
    }
    key.family = sa->ss_family;
    if (!self->slots) {
        self->slots = calloc(ADDR_SLOTS, sizeof(*self->slots));
        if (!self->slots)
            return build_addr(sa);
    }
    struct addr_slot *slot = &self->slots[(h >> 16 ^ h) & (ADDR_SLOTS - 1)];
    int same_ip = slot->family == key.family && memcmp(slot->ip, key.ip, 16) == 0;
    if (same_ip && slot->port == key.port && slot->flowinfo == key.flowinfo &&
        slot->scope_id == key.scope_id) {
        Py_INCREF(slot->tuple);
        *slot_out = slot;
        return slot->tuple;
    }
    PyObject *tuple;
    if (same_ip) { /* same sender, another port: a new tuple around its host string */
        PyObject *port = PyLong_FromLong(key.port);
        if (!port)
            return NULL;
        if (key.family == AF_INET) {
            tuple = PyTuple_Pack(2, slot->host, port);
        } else {
            PyObject *fi = PyLong_FromUnsignedLong(key.flowinfo);
            PyObject *sc = fi ? PyLong_FromUnsignedLong(key.scope_id) : NULL;
            tuple = sc ? PyTuple_Pack(4, slot->host, port, fi, sc) : NULL;
            Py_XDECREF(fi);
            Py_XDECREF(sc);
        }
        Py_DECREF(port);
        if (!tuple)
            return NULL;
    } else {
        tuple = build_addr(sa);
        if (!tuple || !PyTuple_Check(tuple))
            return tuple;
        Py_XSETREF(slot->host, Py_NewRef(PyTuple_GET_ITEM(tuple, 0)));
    }
    slot->family = key.family;
    memcpy(slot->ip, key.ip, 16);
    slot->port = key.port;
    slot->flowinfo = key.flowinfo;
    slot->scope_id = key.scope_id;
    Py_XSETREF(slot->tuple, Py_NewRef(tuple));
    *slot_out = slot;
    return tuple;
}

/* local(addr) with its `local` attribute set to the pktinfo bytes (len 0: none), from
 * the slot when it made one for this tuple and local address last. Steals addr. */
static PyObject *make_local_addr(BatchObject *self, PyObject *addr, struct addr_slot *slot,
                                 const unsigned char *pi, int len)
{
    if (slot && slot->laddr && slot->laddr_of == addr && slot->lalen == len &&
        memcmp(slot->lpi, pi, (size_t)len) == 0) {
        Py_DECREF(addr);
        return Py_NewRef(slot->laddr);
    }
    PyObject *obj = PyObject_CallOneArg(self->local, addr);
    PyObject *bytes = obj ? PyBytes_FromStringAndSize((const char *)pi, len) : NULL;
    if (!bytes || PyObject_SetAttrString(obj, "local", bytes) < 0) {
        Py_XDECREF(bytes);
        Py_XDECREF(obj);
        Py_DECREF(addr);
        return NULL;
    }
    Py_DECREF(bytes);
    if (slot) {
        Py_XSETREF(slot->laddr, Py_NewRef(obj));
        Py_XSETREF(slot->laddr_of, addr); /* the reference moves to the slot */
        slot->lalen = len;
        memcpy(slot->lpi, pi, (size_t)len);
    } else {
        Py_DECREF(addr);
    }
    return obj;
}

static PyObject *Batch_recv(BatchObject *self, PyObject *arg)
{
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0)
        return NULL;
    if (self->b.count == 0) {
        PyErr_SetString(PyExc_ValueError, "Batch not initialised");
        return NULL;
    }
    int n = ub_recv(fd, &self->b);
    if (n < 0) {
        errno = -n;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *list = PyList_New(n);
    if (!list)
        return NULL;
    for (int i = 0; i < n; i++) {
        if (ub_truncated(&self->b, (unsigned)i))
            self->truncated++;
        PyObject *data = PyBytes_FromStringAndSize((const char *)ub_data(&self->b, (unsigned)i),
                                                   (Py_ssize_t)ub_len(&self->b, (unsigned)i));
        struct addr_slot *slot = NULL;
        PyObject *addr = data ? make_addr(self, &self->b.addrs[i], &slot) : NULL;
        if (addr && self->local && PyTuple_Check(addr)) {
            unsigned char pi[UB_PKTINFO6];
            int pl = ub_local_of(&self->b, (unsigned)i, pi);
            addr = make_local_addr(self, addr, slot, pi, pl > 0 ? pl : 0);
        }
        PyObject *item = addr ? PyTuple_New(2) : NULL;
        if (!item) {
            Py_XDECREF(data);
            Py_XDECREF(addr);
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, data); /* the references move into the tuple */
        PyTuple_SET_ITEM(item, 1, addr);
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static int ensure_out(BatchObject *self)
{
    if (self->outcap >= UB_MAX_COUNT)
        return 0;
    struct ub_out *grown = realloc(self->out, sizeof(*grown) * (size_t)UB_MAX_COUNT);
    if (!grown) {
        PyErr_NoMemory();
        return -1;
    }
    self->out = grown;
    self->outcap = UB_MAX_COUNT;
    return 0;
}

/* Fill *o from a (bytes, addr) or (bytes, addr, local) tuple. Returns 1 (ok), 0 (bad
 * address or local address: drop it), -1 (TypeError). */
static int fill_out(PyObject *item, struct ub_out *o)
{
    Py_ssize_t items = PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : 0;
    if (items != 2 && items != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "each message must be a (bytes, address[, local]) tuple");
        return -1;
    }
    PyObject *data = PyTuple_GET_ITEM(item, 0);
    PyObject *addr = PyTuple_GET_ITEM(item, 1);
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "message data must be bytes");
        return -1;
    }
    o->ctrllen = 0;
    if (items == 3) {
        PyObject *local = PyTuple_GET_ITEM(item, 2);
        if (!PyBytes_Check(local)) {
            PyErr_SetString(PyExc_TypeError, "a message's local address must be bytes");
            return -1;
        }
        if (ub_out_local(o, PyBytes_AS_STRING(local), (size_t)PyBytes_GET_SIZE(local)) < 0)
            return 0;
    }
    Py_ssize_t alen = PyTuple_Check(addr) ? PyTuple_GET_SIZE(addr) : 0;
    if ((alen != 2 && alen != 4) || !PyUnicode_Check(PyTuple_GET_ITEM(addr, 0))) {
        PyErr_SetString(PyExc_TypeError, "address must be (host, port) or (host, port, flowinfo, scope_id)");
        return -1;
    }
    for (Py_ssize_t k = 1; k < alen; k++) {
        if (!PyLong_CheckExact(PyTuple_GET_ITEM(addr, k))) {
            PyErr_SetString(PyExc_TypeError, "address port, flowinfo and scope_id must be int");
            return -1;
        }
    }
    Py_ssize_t hlen;
    const char *host = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(addr, 0), &hlen);
    if (!host)
        return -1;
    long port = PyLong_AsLong(PyTuple_GET_ITEM(addr, 1));
    unsigned long flowinfo = 0, scope_id = 0;
    if (alen == 4) {
        flowinfo = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 2));
        scope_id = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 3));
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (flowinfo > 0xffffffffUL || scope_id > 0xffffffffUL)
        return 0;
    if (ub_addr_parse(host, (size_t)hlen, port, (uint32_t)flowinfo, (uint32_t)scope_id, &o->addr,
                      &o->addrlen) < 0)
        return 0;
    o->data = PyBytes_AS_STRING(data);
    o->len = (size_t)PyBytes_GET_SIZE(data);
    return 1;
}

/* Parse (fd, list, start=0) for send and answer; 0, or -1 with an exception set. */
static int parse_send_args(PyObject *args, int *fd, PyObject **list, Py_ssize_t *start)
{
    PyObject *fdobj;
    *start = 0;
    if (!PyArg_ParseTuple(args, "OO!|n", &fdobj, &PyList_Type, list, start))
        return -1;
    *fd = PyObject_AsFileDescriptor(fdobj);
    if (*fd < 0)
        return -1;
    if (*start < 0 || *start > PyList_GET_SIZE(*list)) {
        PyErr_SetString(PyExc_ValueError, "start out of range");
        return -1;
    }
    return 0;
}

/* Send self->out[0..n), list index index[k] each, counting what the kernel drops.
 * Returns the list index of the first message not sent (the socket would block), or
 * -1 when all went. */
static Py_ssize_t send_out(BatchObject *self, int fd, unsigned n, const Py_ssize_t *index)
{
    unsigned errors = 0;
    int err = 0;
    int done = ub_send(fd, self->out, n, &errors, &err);
    if (errors) {
        self->send_errors += errors;
        self->last_send_errno = err;
    }
    return (unsigned)done < n ? index[done] : -1;
}

static PyObject *Batch_send(BatchObject *self, PyObject *args)
{
    PyObject *msgs;
    int fd;
    Py_ssize_t start;
    if (parse_send_args(args, &fd, &msgs, &start) < 0)
        return NULL;
    Py_ssize_t total = PyList_GET_SIZE(msgs);
    Py_ssize_t pos = start;
    while (pos < total) {
        /* Convert up to UB_MAX_COUNT messages, remembering which list index each is. */
        Py_ssize_t want = total - pos < UB_MAX_COUNT ? total - pos : UB_MAX_COUNT;
        if (self->outcap < want && ensure_out(self) < 0)
            return NULL;
        Py_ssize_t index[UB_MAX_COUNT];
        unsigned n = 0;
        Py_ssize_t scan = pos;
        while (scan < total && n < (unsigned)want) {
            int ok = fill_out(PyList_GET_ITEM(msgs, scan), &self->out[n]);
            if (ok < 0)
                return NULL;
            if (ok == 0) {
                self->send_errors++;
                self->last_send_errno = EINVAL;
            } else {
                index[n++] = scan;
            }
            scan++;
        }
        if (n == 0) {
            pos = scan;
            continue;
        }
        Py_ssize_t unsent = send_out(self, fd, n, index);
        if (unsent >= 0)
            return PyLong_FromSsize_t(unsent); /* would block: resume here */
        pos = scan;
    }
    return PyLong_FromSsize_t(total);
}

static PyObject *Batch_answer(BatchObject *self, PyObject *args)
{
    PyObject *answers;
    int fd;
    Py_ssize_t start;
    if (parse_send_args(args, &fd, &answers, &start) < 0)
        return NULL;
    Py_ssize_t total = PyList_GET_SIZE(answers);
    if (total > (Py_ssize_t)self->b.received) {
        PyErr_SetString(PyExc_ValueError, "more answers than datagrams received");
        return NULL;
    }
    if (ensure_out(self) < 0)
        return NULL;
    Py_ssize_t index[UB_MAX_COUNT];
    unsigned n = 0;
    for (Py_ssize_t i = start; i < total; i++) {
        PyObject *resp = PyList_GET_ITEM(answers, i);
        if (resp == Py_None)
            continue;
        if (!PyBytes_Check(resp)) {
            PyErr_SetString(PyExc_TypeError, "each answer must be bytes or None");
            return NULL;
        }
        if (ub_out_to_sender(&self->out[n], &self->b, (unsigned)i, PyBytes_AS_STRING(resp),
                             (size_t)PyBytes_GET_SIZE(resp)) < 0) {
            PyErr_SetString(PyExc_ValueError, "answer index outside the last receive");
            return NULL;
        }
        index[n++] = i;
    }
    Py_ssize_t unsent = n ? send_out(self, fd, n, index) : -1;
    return PyLong_FromSsize_t(unsent >= 0 ? unsent : total); /* unsent: resume there */
}

static PyObject *Batch_get_truncated(BatchObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->truncated);
}

static PyObject *Batch_get_send_errors(BatchObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->send_errors);
}

static PyObject *Batch_get_last_send_errno(BatchObject *self, void *closure)
{
    return PyLong_FromLong(self->last_send_errno);
}

static PyObject *Batch_get_count(BatchObject *self, void *closure)
{
    return PyLong_FromUnsignedLong(self->b.count);
}

static PyObject *Batch_get_size(BatchObject *self, void *closure)
{
    return PyLong_FromSize_t(self->b.size);
}

static PyMethodDef Batch_methods[] = {
    {"recv", (PyCFunction)Batch_recv, METH_O,
     "recv(fd) -> list of (bytes, addr): the datagrams waiting, at most count; [] if none."},
    {"send", (PyCFunction)Batch_send, METH_VARARGS,
     "send(fd, msgs, start=0) -> int: send msgs[start:], each (bytes, addr[, local]);"
     " the index of the first unsent."},
    {"answer", (PyCFunction)Batch_answer, METH_VARARGS,
     "answer(fd, answers, start=0) -> int: answers[i] (bytes or None) to the sender of"
     " datagram i of the last recv; the index of the first unsent."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Batch_getset[] = {
    {"truncated", (getter)Batch_get_truncated, NULL, "datagrams cut to size", NULL},
    {"send_errors", (getter)Batch_get_send_errors, NULL, "messages dropped on send", NULL},
    {"last_send_errno", (getter)Batch_get_last_send_errno, NULL, "errno of the last drop", NULL},
    {"count", (getter)Batch_get_count, NULL, "datagrams per receive", NULL},
    {"size", (getter)Batch_get_size, NULL, "bytes per datagram buffer", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mamori.resolver.udpbatch.Batch",
    .tp_basicsize = sizeof(BatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Buffers for receiving and sending UDP datagrams in batches (recvmmsg/sendmmsg).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Batch_init,
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_methods = Batch_methods,
    .tp_getset = Batch_getset,
};

static struct PyModuleDef udpbatch_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mamori.resolver.udpbatch",
    .m_doc = "Batched UDP datagram I/O (recvmmsg/sendmmsg); system calls and buffers only.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit_udpbatch(void)
{
    if (PyType_Ready(&BatchType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&udpbatch_module);
    if (!m)
        return NULL;
    Py_INCREF(&BatchType);
    if (PyModule_AddObject(m, "Batch", (PyObject *)&BatchType) < 0) {
        Py_DECREF(&BatchType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_COUNT", UB_MAX_COUNT) < 0 ||
        PyModule_AddIntConstant(m, "MAX_SIZE", UB_MAX_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
