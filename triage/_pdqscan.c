/* The candidate scan of triage.pdq_index in C: the same multi-index search, one pass.
 *
 * numpy scores a query's ~4,000 candidates (at 1M hashes) in a dozen whole-array passes;
 * here each candidate is read once, scored on all 256 bits and kept or dropped in the same
 * loop, without the GIL. Layout and recall argument: see triage/pdq_index.py.
 *
 *   main(q, codes, order, starts, dead, n, cap, max_distance, one_bit) -> (qn, rows, dist)
 *   brute(q, codes, dead, n, max_distance) -> (qn, rows, dist)
 *
 * q: (nq, 32) uint8; codes: (>= n, 32) uint8; order: int32, table t at [t * cap, t * cap + n);
 * starts: (16, 65537) int32; dead: (>= n) bool. Results are int64 arrays as bytes, ordered by
 * query, each (query, row) once. A row reached through several tables is kept only in the
 * first table whose chunk is within the probe radius (0, or 1 bit when `one_bit`).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("popcnt") /* every x86-64 CPU since 2008; one instruction per word */
#endif

#define TABLES 16
#define PREFETCH 96
#define KEYS 65536

typedef struct {
    int64_t *qn, *row, *dist;
    Py_ssize_t len, cap;
} hits_t;

static int hits_push(hits_t *h, int64_t qn, int64_t row, int64_t dist) {
    if (h->len == h->cap) {
        Py_ssize_t cap = h->cap ? h->cap * 2 : 256;
        int64_t *a = realloc(h->qn, cap * sizeof(int64_t));
        if (!a) return -1;
        h->qn = a;
        a = realloc(h->row, cap * sizeof(int64_t));
        if (!a) return -1;
        h->row = a;
        a = realloc(h->dist, cap * sizeof(int64_t));
        if (!a) return -1;
        h->dist = a;
        h->cap = cap;
    }
    h->qn[h->len] = qn;
    h->row[h->len] = row;
    h->dist[h->len] = dist;
    h->len++;
    return 0;
}

static void hits_free(hits_t *h) {
    free(h->qn);
    free(h->row);
    free(h->dist);
    h->qn = h->row = h->dist = NULL;
    h->len = h->cap = 0;
}

static PyObject *hits_result(hits_t *h) {
    Py_ssize_t nb = h->len * (Py_ssize_t)sizeof(int64_t);
    static const char none[1] = {0};  /* y# with a NULL pointer would give None */
    PyObject *out = Py_BuildValue("(y#y#y#)", nb ? (const char *)h->qn : none, nb,
                                  nb ? (const char *)h->row : none, nb,
                                  nb ? (const char *)h->dist : none, nb);
    hits_free(h);
    return out;
}

/* The scan's answer, or MemoryError when a push failed; the hits are freed either way. */
static PyObject *hits_done(hits_t *h, int failed) {
    if (!failed) return hits_result(h);
    hits_free(h);
    return PyErr_NoMemory();
}

static inline int distance256(const uint64_t *a, const uint64_t *b) {
    return __builtin_popcountll(a[0] ^ b[0]) + __builtin_popcountll(a[1] ^ b[1]) +
           __builtin_popcountll(a[2] ^ b[2]) + __builtin_popcountll(a[3] ^ b[3]);
}

/* 0 when the queries are whole 32-byte hashes; -1 with ValueError otherwise. */
static int check_queries(Py_buffer *q) {
    if (q->len % 32) {
        PyErr_Format(PyExc_ValueError, "queries: %zd bytes, not a whole number of 32-byte hashes",
                     q->len);
        return -1;
    }
    return 0;
}

static int check(Py_buffer *b, Py_ssize_t need, const char *what) {
    if (b->len < need) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, need at least %zd", what, b->len, need);
        return -1;
    }
    return 0;
}

static PyObject *scan_main(PyObject *self, PyObject *args) {
    Py_buffer q, codes, order, starts, dead;
    Py_ssize_t n, cap;
    int maxd, one_bit;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*nnip", &q, &codes, &order, &starts, &dead, &n, &cap,
                          &maxd, &one_bit))
        return NULL;
    PyObject *out = NULL;
    hits_t h = {0};
    int failed = 0;
    int corrupt = 0; /* a table entry outside [0, n]: the index is damaged, never read past */
    Py_ssize_t nq = q.len / 32;
    if (n < 0 || cap < n) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= n <= cap");
        goto done;
    }
    if (check_queries(&q) || check(&codes, n * 32, "codes") ||
        check(&order, (TABLES - 1) * cap * 4 + n * 4, "order") ||
        check(&starts, (Py_ssize_t)TABLES * (KEYS + 1) * 4, "starts") || check(&dead, n, "dead"))
        goto done;
    {
        const uint8_t *qb = q.buf, *cb = codes.buf, *db = dead.buf;
        const int32_t *ob = order.buf, *sb = starts.buf;
        const int radius = one_bit ? 1 : 0;
        const int nprobe = one_bit ? 17 : 1;
        Py_BEGIN_ALLOW_THREADS
        /* A query's candidates (row, table) are listed first, then scored with the rows
         * prefetched well ahead: they are scattered over the codes, and reading them one
         * after the other would wait for memory each time. */
        Py_ssize_t lcap = 0;
        int32_t *cand = NULL;
        uint8_t *ctab = NULL;
        for (Py_ssize_t i = 0; i < nq && !failed; i++) {
            uint64_t qw[4];
            uint16_t qc[TABLES];
            memcpy(qw, qb + i * 32, 32);
            memcpy(qc, qb + i * 32, 32);
            Py_ssize_t nc = 0;
            for (int t = 0; t < TABLES; t++) {
                const int32_t *st = sb + (Py_ssize_t)t * (KEYS + 1);
                const int32_t *ot = ob + (Py_ssize_t)t * cap;
                for (int p = 0; p < nprobe; p++) {
                    unsigned key = qc[t] ^ (p ? (1u << (p - 1)) : 0u);
                    const int32_t lo = st[key], hi = st[key + 1];
                    if (lo < 0 || hi < lo || hi > n) {
                        corrupt = failed = 1;
                        break;
                    }
                    Py_ssize_t len = hi - lo;
                    if (len == 0) continue;
                    if (nc + len > lcap) {
                        Py_ssize_t c2 = (nc + len) * 2;
                        int32_t *a = realloc(cand, c2 * sizeof(int32_t));
                        uint8_t *b = a ? realloc(ctab, c2) : NULL;
                        if (a) cand = a;
                        if (!a || !b) {
                            failed = 1;
                            break;
                        }
                        ctab = b;
                        lcap = c2;
                    }
                    memcpy(cand + nc, ot + lo, len * sizeof(int32_t));
                    memset(ctab + nc, t, len);
                    nc += len;
                }
                if (failed) break;
            }
            for (Py_ssize_t j = 0; j < nc && !failed; j++) {
                if (j + PREFETCH < nc) __builtin_prefetch(cb + (Py_ssize_t)cand[j + PREFETCH] * 32);
                int32_t r = cand[j];
                if ((uint32_t)r >= (uint32_t)n) { /* a row past the stored ones: damaged */
                    corrupt = failed = 1;
                    break;
                }
                uint64_t cw[4];
                memcpy(cw, cb + (Py_ssize_t)r * 32, 32);
                int d = distance256(qw, cw);
                if (d > maxd || db[r]) continue;
                uint16_t rc[TABLES];
                memcpy(rc, cw, 32);
                int earlier = 0;
                for (int u = 0; u < ctab[j]; u++) {
                    if (__builtin_popcount((unsigned)(qc[u] ^ rc[u])) <= radius) {
                        earlier = 1;
                        break;
                    }
                }
                if (!earlier && hits_push(&h, i, r, d)) failed = 1;
            }
        }
        free(cand);
        free(ctab);
        Py_END_ALLOW_THREADS
    }
    if (corrupt) {
        hits_free(&h);
        PyErr_SetString(PyExc_ValueError, "index tables point outside the stored rows");
    } else {
        out = hits_done(&h, failed);
    }
done:
    if (!out) hits_free(&h);
    PyBuffer_Release(&q);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&order);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&dead);
    return out;
}

#define BRUTE_RELEASE_ROWS 16384

static PyObject *scan_brute(PyObject *self, PyObject *args) {
    Py_buffer q, codes, dead;
    Py_ssize_t n;
    int maxd;
    if (!PyArg_ParseTuple(args, "y*y*y*ni", &q, &codes, &dead, &n, &maxd)) return NULL;
    PyObject *out = NULL;
    hits_t h = {0};
    int failed = 0;
    Py_ssize_t nq = q.len / 32;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "need n >= 0");
        goto done;
    }
    if (check_queries(&q) || check(&codes, n * 32, "codes") || check(&dead, n, "dead")) goto done;
    {
        const uint8_t *qb = q.buf, *cb = codes.buf, *db = dead.buf;
        /* A scan of a few thousand rows takes microseconds: less than handing the GIL to
           another thread and waiting to get it back. */
        PyThreadState *released = nq * n >= BRUTE_RELEASE_ROWS ? PyEval_SaveThread() : NULL;
        for (Py_ssize_t i = 0; i < nq && !failed; i++) {
            uint64_t qw[4];
            memcpy(qw, qb + i * 32, 32);
            for (Py_ssize_t r = 0; r < n; r++) {
                uint64_t cw[4];
                memcpy(cw, cb + r * 32, 32);
                int d = distance256(qw, cw);
                if (d > maxd || db[r]) continue;
                if (hits_push(&h, i, r, d)) {
                    failed = 1;
                    break;
                }
            }
        }
        if (released) PyEval_RestoreThread(released);
    }
    out = hits_done(&h, failed);
done:
    if (!out) hits_free(&h);
    PyBuffer_Release(&q);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&dead);
    return out;
}

static PyMethodDef methods[] = {
    {"main", scan_main, METH_VARARGS, "Multi-index candidate scan of the main segment."},
    {"brute", scan_brute, METH_VARARGS, "Brute-force scan of a small segment."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pdqscan",
                                    "PDQ candidate scans for triage.pdq_index.", -1, methods};

PyMODINIT_FUNC PyInit__pdqscan(void) { return PyModule_Create(&module); }
