/* flowcoro.observe._recorder: the HTTP request histogram's per-request aggregation, in C.
 *
 * The pure-Python twin is flowcoro/observe/_pyrecorder.py (same API, same results; used when
 * this module was not compiled). Why C: the whole per-request budget of flowcoro-observe is
 * about 130 ns (1% of the server's ~13 us of CPU per request), and the Python version of this
 * one call (nested dict lookups, bisect, two list increments, one Python frame) costs ~200 ns.
 * Here it is one C call: the request's method, the route and the status select a cell (the last
 * route and method are remembered by identity), the duration's bucket is found by a linear scan
 * from the smallest bound (fast requests stop at once), a count and the sum are added.
 *
 * Cardinality is bounded as in Python: unknown methods are counted as "_OTHER", statuses
 * outside 100-599 as 0. Called from the event-loop thread (under the GIL). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#if defined(__linux__)
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif
#endif

#define N_KNOWN 9
#define OTHER N_KNOWN /* the index of "_OTHER" */

static const char *METHOD_NAMES[N_KNOWN + 1] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
};

typedef struct {
    int key; /* method index * 1000 + status */
    double sum;
    unsigned long long *counts; /* n_bounds + 1 (the last is +Inf) */
} Cell;

typedef struct {
    Py_ssize_t n, cap;
    Cell *cells;
} RouteCells;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n_bounds;
    double *bounds;
    PyObject *routes;      /* dict: route -> capsule(RouteCells) */
    PyObject *last_route;  /* strong reference, or NULL */
    RouteCells *last_cells;
    PyObject *last_method; /* strong reference, or NULL */
    int last_method_index;
    PyObject *names[N_KNOWN + 1];
} Recorder;

static PyObject *str_method; /* "method", interned */
#if !defined(__linux__)
static PyObject *perf_counter; /* time.perf_counter, where its clock is not CLOCK_MONOTONIC */
#endif

static void
route_cells_free(PyObject *capsule)
{
    RouteCells *rc = (RouteCells *)PyCapsule_GetPointer(capsule, NULL);
    if (rc == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < rc->n; i++) {
        PyMem_Free(rc->cells[i].counts);
    }
    PyMem_Free(rc->cells);
    PyMem_Free(rc);
}

static int
method_index(PyObject *method)
{
    if (!PyUnicode_Check(method)) {
        return OTHER;
    }
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(method, &size);
    if (text == NULL) {
        PyErr_Clear();
        return OTHER;
    }
    for (int i = 0; i < N_KNOWN; i++) {
        if ((size_t)size == strlen(METHOD_NAMES[i]) && memcmp(text, METHOD_NAMES[i], size) == 0) {
            return i;
        }
    }
    return OTHER;
}

static RouteCells *
route_cells(Recorder *self, PyObject *route)
{
    PyObject *capsule = PyDict_GetItemWithError(self->routes, route); /* borrowed */
    if (capsule != NULL) {
        return (RouteCells *)PyCapsule_GetPointer(capsule, NULL);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    RouteCells *rc = PyMem_Calloc(1, sizeof(RouteCells));
    if (rc == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    capsule = PyCapsule_New(rc, NULL, route_cells_free);
    if (capsule == NULL) {
        PyMem_Free(rc);
        return NULL;
    }
    int failed = PyDict_SetItem(self->routes, route, capsule);
    Py_DECREF(capsule); /* the dict holds it */
    return failed ? NULL : rc;
}

static Cell *
add_cell(Recorder *self, RouteCells *rc, int key)
{
    if (rc->n == rc->cap) {
        Py_ssize_t cap = rc->cap ? rc->cap * 2 : 4;
        Cell *cells = PyMem_Realloc(rc->cells, cap * sizeof(Cell));
        if (cells == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        rc->cells = cells;
        rc->cap = cap;
    }
    unsigned long long *counts = PyMem_Calloc(self->n_bounds + 1, sizeof(unsigned long long));
    if (counts == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    Cell *cell = &rc->cells[rc->n++];
    cell->key = key;
    cell->sum = 0.0;
    cell->counts = counts;
    return cell;
}

static PyObject *record(Recorder *self, PyObject *route, PyObject *method, long status,
                        double duration);

/* A float argument (a duration or a perf_counter() time); -1 with an exception on failure. */
static int
float_arg(PyObject *value, double *out)
{
    if (PyFloat_CheckExact(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 0;
    }
    *out = PyFloat_AsDouble(value);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* The status as counted: an int in 100-599, else 0; -1 with an exception on failure. */
static int
status_arg(PyObject *value, long *out)
{
    long status = 0;
    if (PyLong_Check(value)) {
        int overflow;
        status = PyLong_AsLongAndOverflow(value, &overflow);
        if (status == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    *out = (status < 100 || status > 599) ? 0 : status;
    return 0;
}

/* request_finished(request, route, status, duration) */
static PyObject *
Recorder_request_finished(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "request_finished() takes 4 arguments (request, route, status, duration), "
                     "%zd given", nargs);
        return NULL;
    }
    PyObject *route = args[1];
    double duration;
    long status;
    if (float_arg(args[3], &duration) < 0 || status_arg(args[2], &status) < 0) {
        return NULL;
    }
    PyObject *method = PyObject_GetAttr(args[0], str_method);
    if (method == NULL) {
        return NULL;
    }
    PyObject *done = record(self, route, method, status, duration);
    Py_DECREF(method);
    return done;
}

/* The request clock. perf_counter() is clock_gettime(CLOCK_MONOTONIC) on Linux, which the
 * kernel computes from the CPU's time-stamp counter when its clocksource is "tsc": then this
 * clock reads the counter itself (rdtsc, about half the cost of the vDSO call on the machines
 * measured, which is what a request pays twice), scaled by a period calibrated against
 * CLOCK_MONOTONIC when the module loads (2 ms) and anchored to it, so its values stay close to
 * perf_counter()'s and its differences agree with them to ~1e-5. Elsewhere, or with
 * FLOWCORO_OBSERVE_CLOCK=monotonic, it is CLOCK_MONOTONIC itself. */
#if defined(HAVE_TSC)
static int use_tsc;
static double tsc_period; /* seconds per tick */
static unsigned long long tsc_origin;
static double mono_origin;
#endif

#if defined(__linux__)
static double
mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
#endif

#if defined(HAVE_TSC)
static void
calibrate_tsc(void)
{
    const char *choice = getenv("FLOWCORO_OBSERVE_CLOCK");
    if (choice != NULL && strcmp(choice, "monotonic") == 0) {
        return;
    }
    char source[32] = {0};
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == NULL) {
        return;
    }
    size_t got = fread(source, 1, sizeof(source) - 1, f);
    fclose(f);
    if (got < 3 || strncmp(source, "tsc", 3) != 0 || (source[3] != '\n' && source[3] != 0)) {
        return; /* the kernel does not trust the counter: neither do we */
    }
    /* Each reading of the counter between two of the clock, taken as their midpoint. */
    double before = mono_seconds();
    unsigned long long c0 = __rdtsc();
    double t0 = (before + mono_seconds()) / 2;
    while (mono_seconds() - t0 < 0.002) {
    }
    before = mono_seconds();
    unsigned long long c1 = __rdtsc();
    double t1 = (before + mono_seconds()) / 2;
    if (c1 <= c0) {
        return;
    }
    tsc_period = (t1 - t0) / (double)(c1 - c0);
    tsc_origin = c1;
    mono_origin = t1;
    use_tsc = 1;
}
#endif

/* Now on the request clock, in seconds; -1.0 with an exception set on failure. */
static double
perf_now(void)
{
#if defined(HAVE_TSC)
    if (use_tsc) {
        return mono_origin + (double)(long long)(__rdtsc() - tsc_origin) * tsc_period;
    }
#endif
#if defined(__linux__)
    return mono_seconds();
#else
    PyObject *now = PyObject_CallNoArgs(perf_counter);
    if (now == NULL) {
        return -1.0;
    }
    double value = PyFloat_AsDouble(now);
    Py_DECREF(now);
    return value;
#endif
}

/* request_timed(request, route, method, status, started): as request_finished, with the
 * duration measured here from ``started`` (a time.perf_counter() value) and the method given:
 * the protocol's fast path hands over what it holds and reads no clock of its own at the end.
 * The request itself is not read. */
static PyObject *
Recorder_request_timed(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "request_timed() takes 5 arguments (request, route, method, status, "
                     "started), %zd given", nargs);
        return NULL;
    }
    double started;
    long status;
    if (float_arg(args[4], &started) < 0 || status_arg(args[3], &status) < 0) {
        return NULL;
    }
    double now = perf_now();
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return record(self, args[1], args[2], status, now - started);
}

/* One request into its cell: the method (borrowed) and route select it, the duration its
 * bucket. */
static PyObject *
record(Recorder *self, PyObject *route, PyObject *method, long status, double duration)
{
    int mi;
    if (method == self->last_method) {
        mi = self->last_method_index;
    }
    else {
        mi = method_index(method);
        Py_INCREF(method);
        Py_XSETREF(self->last_method, method);
        self->last_method_index = mi;
    }
    RouteCells *rc;
    if (route == self->last_route) {
        rc = self->last_cells;
    }
    else {
        rc = route_cells(self, route);
        if (rc == NULL) {
            return NULL;
        }
        Py_INCREF(route);
        Py_XSETREF(self->last_route, route);
        self->last_cells = rc;
    }
    int key = mi * 1000 + (int)status;
    Cell *cell = NULL;
    for (Py_ssize_t i = 0; i < rc->n; i++) {
        if (rc->cells[i].key == key) {
            cell = &rc->cells[i];
            break;
        }
    }
    if (cell == NULL) {
        cell = add_cell(self, rc, key);
        if (cell == NULL) {
            return NULL;
        }
    }
    /* bisect_left: the first bound >= duration (the bucket whose "le" holds it) */
    Py_ssize_t i = 0, n = self->n_bounds;
    const double *bounds = self->bounds;
    while (i < n && bounds[i] < duration) {
        i++;
    }
    cell->counts[i]++;
    cell->sum += duration;
    Py_RETURN_NONE;
}

/* snapshot() -> [(route, method, status, [counts...], sum), ...] */
static PyObject *
Recorder_snapshot(Recorder *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    PyObject *route, *capsule;
    Py_ssize_t pos = 0;
    while (PyDict_Next(self->routes, &pos, &route, &capsule)) {
        RouteCells *rc = (RouteCells *)PyCapsule_GetPointer(capsule, NULL);
        if (rc == NULL) {
            goto error;
        }
        for (Py_ssize_t c = 0; c < rc->n; c++) {
            Cell *cell = &rc->cells[c];
            PyObject *counts = PyList_New(self->n_bounds + 1);
            if (counts == NULL) {
                goto error;
            }
            for (Py_ssize_t b = 0; b <= self->n_bounds; b++) {
                PyObject *count = PyLong_FromUnsignedLongLong(cell->counts[b]);
                if (count == NULL) {
                    Py_DECREF(counts);
                    goto error;
                }
                PyList_SET_ITEM(counts, b, count);
            }
            PyObject *item = Py_BuildValue("(OOiNd)", route, self->names[cell->key / 1000],
                                           cell->key % 1000, counts, cell->sum);
            if (item == NULL) {
                goto error;
            }
            int failed = PyList_Append(out, item);
            Py_DECREF(item);
            if (failed) {
                goto error;
            }
        }
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static int
Recorder_init(Recorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"bounds", NULL};
    PyObject *given;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Recorder", kwlist, &given)) {
        return -1;
    }
    PyObject *seq = PySequence_Fast(given, "bounds must be a sequence of numbers");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "bounds: give at least one finite upper bound");
        return -1;
    }
    double *bounds = PyMem_Calloc(n, sizeof(double));
    if (bounds == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        bounds[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (bounds[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            PyMem_Free(bounds);
            return -1;
        }
        if (i > 0 && !(bounds[i] > bounds[i - 1])) {
            Py_DECREF(seq);
            PyMem_Free(bounds);
            PyErr_SetString(PyExc_ValueError, "bounds must be strictly increasing");
            return -1;
        }
    }
    Py_DECREF(seq);
    if (self->routes != NULL) { /* __init__ called again */
        PyErr_SetString(PyExc_RuntimeError, "Recorder is already initialised");
        PyMem_Free(bounds);
        return -1;
    }
    self->routes = PyDict_New();
    if (self->routes == NULL) {
        PyMem_Free(bounds);
        return -1;
    }
    for (int i = 0; i <= N_KNOWN; i++) {
        self->names[i] = PyUnicode_InternFromString(METHOD_NAMES[i]);
        if (self->names[i] == NULL) {
            PyMem_Free(bounds);
            return -1;
        }
    }
    self->bounds = bounds;
    self->n_bounds = n;
    return 0;
}

static void
Recorder_dealloc(Recorder *self)
{
    Py_XDECREF(self->routes);
    Py_XDECREF(self->last_route);
    Py_XDECREF(self->last_method);
    for (int i = 0; i <= N_KNOWN; i++) {
        Py_XDECREF(self->names[i]);
    }
    PyMem_Free(self->bounds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Recorder_get_bounds(Recorder *self, void *Py_UNUSED(closure))
{
    PyObject *out = PyTuple_New(self->n_bounds);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->n_bounds; i++) {
        PyObject *value = PyFloat_FromDouble(self->bounds[i]);
        if (value == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, value);
    }
    return out;
}

static PyObject *
Recorder_clock(PyObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t nargs)
{
    if (nargs != 0) {
        PyErr_Format(PyExc_TypeError, "clock() takes no arguments (%zd given)", nargs);
        return NULL;
    }
    double now = perf_now();
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return PyFloat_FromDouble(now);
}

static PyMethodDef Recorder_methods[] = {
    {"clock", (PyCFunction)(void (*)(void))Recorder_clock, METH_FASTCALL,
     "clock() -> float: now, in seconds, on the clock request_timed reads (see clock_source)."},
    {"request_finished", (PyCFunction)(void (*)(void))Recorder_request_finished, METH_FASTCALL,
     "request_finished(request, route, status, duration): count one finished request."},
    {"request_timed", (PyCFunction)(void (*)(void))Recorder_request_timed, METH_FASTCALL,
     "request_timed(request, route, method, status, started): count one request that started at "
     "``started`` (a clock() value) and finished now."},
    {"snapshot", (PyCFunction)Recorder_snapshot, METH_NOARGS,
     "snapshot() -> list of (route, method, status, bucket counts, sum)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Recorder_getset[] = {
    {"bounds", (getter)Recorder_get_bounds, NULL, "The finite bucket upper bounds.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowcoro.observe._recorder.Recorder",
    .tp_doc = "Per-(route, method, status) latency histograms of HTTP requests.",
    .tp_basicsize = sizeof(Recorder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Recorder_init,
    .tp_dealloc = (destructor)Recorder_dealloc,
    .tp_methods = Recorder_methods,
    .tp_getset = Recorder_getset,
};

/* -- Countdown: the head sampler's per-request decision for a dropped request ----------------
 *
 * The tracer's ``request_entered`` (see flowcoro/observe/tracing.py): at 1% head sampling, 99%
 * of requests are dropped, and for them this is the whole of tracing's cost: a request without
 * a ``traceparent`` while more than one request remains before the next kept one is counted
 * down and left alone (None). Everything else (the kept request, a request with a remote
 * parent, a request object without a ``traceparent`` attribute, before the sampler is known)
 * goes to ``slow(request)``, in Python, which may set ``remaining``. */

static PyObject *str_traceparent;

typedef struct {
    PyObject_HEAD
    long long remaining;
    PyObject *slow;
} Countdown;

static int
Countdown_init(Countdown *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"slow", NULL};
    PyObject *slow;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Countdown", kwlist, &slow)) {
        return -1;
    }
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "Countdown: slow must be callable");
        return -1;
    }
    Py_INCREF(slow);
    Py_XSETREF(self->slow, slow);
    self->remaining = 0;
    return 0;
}

/* `slow` is usually a bound method of the tracer that holds this countdown: a cycle, which the
 * collector must be able to see (and break). */
static int
Countdown_traverse(Countdown *self, visitproc visit, void *arg)
{
    Py_VISIT(self->slow);
    return 0;
}

static int
Countdown_clear(Countdown *self)
{
    Py_CLEAR(self->slow);
    return 0;
}

static void
Countdown_dealloc(Countdown *self)
{
    PyObject_GC_UnTrack(self);
    Countdown_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Countdown_decide(Countdown *self, PyObject *request)
{
    if (self->remaining > 1) {
        PyObject *parent = PyObject_GetAttr(request, str_traceparent);
        if (parent == Py_None) {
            Py_DECREF(parent);
            self->remaining--;
            Py_RETURN_NONE;
        }
        if (parent == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return NULL;
            }
            PyErr_Clear(); /* not flowcoro-http's request: Python reads its headers */
        }
        else {
            Py_DECREF(parent);
        }
    }
    if (self->slow == NULL) {
        PyErr_SetString(PyExc_TypeError, "Countdown: not initialised (or cleared)");
        return NULL;
    }
    return PyObject_CallOneArg(self->slow, request);
}

static PyMemberDef Countdown_members[] = {
    {"remaining", T_LONGLONG, offsetof(Countdown, remaining), 0,
     "Root requests until the next kept one, that one included (0: not known yet)."},
    {"slow", T_OBJECT, offsetof(Countdown, slow), READONLY, "What decides every other request."},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef Countdown_methods[] = {
    {"decide", (PyCFunction)Countdown_decide, METH_O,
     "decide(request): None for a dropped request, else what slow(request) returns; handed to "
     "flowcoro-http as this bound method, which the interpreter calls on a specialised path."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CountdownType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowcoro.observe._recorder.Countdown",
    .tp_doc = "Countdown(slow): the head sampler's decision for dropped requests, in C.",
    .tp_basicsize = sizeof(Countdown),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Countdown_init,
    .tp_dealloc = (destructor)Countdown_dealloc,
    .tp_traverse = (traverseproc)Countdown_traverse,
    .tp_clear = (inquiry)Countdown_clear,
    .tp_members = Countdown_members,
    .tp_methods = Countdown_methods,
};

static PyObject *
clock_source(PyObject *module, PyObject *Py_UNUSED(ignored))
{
#if defined(HAVE_TSC)
    if (use_tsc) {
        return PyUnicode_FromString("tsc");
    }
#endif
#if defined(__linux__)
    return PyUnicode_FromString("monotonic");
#else
    return PyUnicode_FromString("perf_counter");
#endif
}

static PyMethodDef module_methods[] = {
    {"clock_source", clock_source, METH_NOARGS,
     "clock_source() -> 'tsc', 'monotonic' or 'perf_counter': what Recorder.clock() reads."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef recorder_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "flowcoro.observe._recorder",
    .m_doc = "The compiled twin of flowcoro.observe._pyrecorder.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__recorder(void)
{
    str_method = PyUnicode_InternFromString("method");
    str_traceparent = PyUnicode_InternFromString("traceparent");
    if (str_method == NULL || str_traceparent == NULL || PyType_Ready(&RecorderType) < 0
        || PyType_Ready(&CountdownType) < 0) {
        return NULL;
    }
#if defined(HAVE_TSC)
    calibrate_tsc();
#endif
#if !defined(__linux__)
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL) {
        return NULL;
    }
    perf_counter = PyObject_GetAttrString(time_module, "perf_counter");
    Py_DECREF(time_module);
    if (perf_counter == NULL) {
        return NULL;
    }
#endif
    PyObject *module = PyModule_Create(&recorder_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&RecorderType);
    if (PyModule_AddObject(module, "Recorder", (PyObject *)&RecorderType) < 0) {
        Py_DECREF(&RecorderType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&CountdownType);
    if (PyModule_AddObject(module, "Countdown", (PyObject *)&CountdownType) < 0) {
        Py_DECREF(&CountdownType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
