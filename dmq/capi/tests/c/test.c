/* Exercises the C interface: send, receive (blocking and not), errors, info, free. */
#include <stdio.h>
#include <string.h>
#include "dmq.h"

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, " (%s)\n", dmq_errmsg()); return 1; } } while (0)

static int same(const struct dmq_record *r, const char *want) {
    size_t n = (size_t)(r->end - r->begin);
    return n == strlen(want) && memcmp(r->begin, want, n) == 0;
}

int main(int argc, char **argv) {
    char base[4096];
    int err = -1;
    const struct dmq_record *r;
    CHECK(argc == 2, "usage: test BASE");
    snprintf(base, sizeof base, "%s", argv[1]);

    int w = dmq_init(base, MODE_FRAMES);
    CHECK(w >= 0, "dmq_init");
    CHECK(dmq_send(w, "hello", 5) == 7, "send hello: frame of 7 bytes");
    CHECK(dmq_send(w, "with\nnewline\0and nul", 20) == 22, "send binary");
    CHECK(dmq_send(w, "", 0) == 2, "send empty");
    static char big[70000];
    CHECK(dmq_send(w, big, (int)sizeof big) == -1, "oversized send must fail");
    CHECK(strstr(dmq_errmsg(), "exceeds the limit") != NULL, "error message: %s", dmq_errmsg());

    /* A second descriptor on the same queue reads; the mode passed is ignored. */
    int q = dmq_init(base, MODE_NEWLINES);
    CHECK(q >= 0 && q != w, "second dmq_init");
    r = dmq_receive(q, 0, &err);
    CHECK(r && err == 0 && same(r, "hello"), "blocking receive of hello");
    r = dmq_receive(q, 1, &err);
    CHECK(r && (size_t)(r->end - r->begin) == 20 && memcmp(r->begin, "with\nnewline\0and nul", 20) == 0,
          "binary message");
    r = dmq_receive(q, 1, &err);
    CHECK(r && r->begin == r->end, "empty message");
    for (int i = 0; i < 5; i++) {
        err = -1;
        r = dmq_receive(q, 1, &err);
        CHECK(r == NULL && err == 0, "empty queue, nowait, attempt %d", i);
    }
    /* One reader per queue. */
    int other = dmq_init(base, MODE_DEFAULT);
    r = dmq_receive(other, 1, &err);
    CHECK(r == NULL && err == 1, "second reader must fail");
    CHECK(strstr(dmq_errmsg(), "another reader") != NULL, "reader busy message: %s", dmq_errmsg());
    dmq_free(other);

    r = dmq_receive(12345, 1, &err);
    CHECK(r == NULL && err == 1, "bad descriptor");
    CHECK(dmq_send(-1, "x", 1) == -1, "bad descriptor send");
    CHECK(dmq_init(NULL, MODE_NEWLINES) == -1, "NULL basepath");

    dmq_info(q);
    dmq_free(q);
    dmq_free(w);
    printf("all ok\n");
    return 0;
}
