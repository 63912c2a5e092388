/*
** test_jobs.c - the job protocol of distributed blocks (src/redis/jobs.c)
** through the C API: a client (tn_cblock_*) and workers (tn_worker_*,
** tn_wslot_*) in one process, each worker thread being this test's
** thread. Faults are made by hand on the server (a lease deleted, a run id
** pushed again, a result's byte flipped).
**
** Needs a server: TUNNEL_REDIS_URL (scripts/with-redis.sh); skipped
** without one.
*/
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "../src/redis/jobs.h"

/* A raw command on the test server (for faults); the integer reply. */
static long long raw(const char *fmt, const char *a, const char *b) {
  const char *url = getenv("TUNNEL_REDIS_URL");
  tn_url_t u;
  if (tn_url_parse(url, &u) != TN_OK) return -1;
  redisContext *ctx = redisConnect(u.host, u.port);
  long long v = -1;
  if (ctx != NULL && !ctx->err) {
    if (u.db != 0) freeReplyObject(redisCommand(ctx, "SELECT %d", u.db));
    redisReply *r = redisCommand(ctx, fmt, a, b);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER) v = r->integer;
    if (r != NULL && r->type == REDIS_REPLY_STATUS) v = 0;
    if (r != NULL) freeReplyObject(r);
  }
  if (ctx != NULL) redisFree(ctx);
  tn_url_free(&u);
  return v;
}

static tn_blob_t *text(const char *s) {
  return tn_blob_new(s, strlen(s), NULL, 0);
}

static int same(const tn_blob_t *b, const char *s) {
  return b != NULL && tn_blob_size(b) == strlen(s) &&
         memcmp(tn_blob_data(b), s, strlen(s)) == 0;
}

static tn_cblock_t *block(tn_cluster_t *c, const char *name, int size,
                          const char *runtime, const char *secret,
                          double lease) {
  tn_cblock_options_t o = {runtime, NULL, 0, 0, lease, secret,
                           secret != NULL ? strlen(secret) : 0};
  tn_cblock_t *b = NULL;
  CHECK_RC(tn_cblock_open(c, name, size, &o, &b), TN_OK);
  return b;
}

static tn_worker_t *worker(tn_cluster_t *c, const char *runtime,
                           const char *only, const char *secret) {
  const char *blocks[] = {only};
  tn_worker_options_t o = {runtime, 1, blocks, 1, secret,
                           secret != NULL ? strlen(secret) : 0};
  tn_worker_t *w = NULL;
  CHECK_RC(tn_worker_new(c, &o, &w), TN_OK);
  return w;
}

/* Queue a run of `value`. */
static void run(tn_cblock_t *b, const char *value, unsigned long *id) {
  tn_blob_t *j = text(value);
  CHECK_RC(tn_cblock_run(b, j, id), TN_OK);
  tn_blob_release(j);
}

static void finish(tn_wslot_t *s, tn_wjob_t *job, const char *value) {
  tn_blob_t *v = text(value);
  CHECK_RC(tn_wslot_finish(s, job, 1, v), TN_OK);
  tn_blob_release(v);
  tn_blob_release(job->job);
}

TEST(jobs_roundtrip, "a run gives every slot its job in order, and every job "
                     "one status with its value") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("rt");
  tn_cblock_t *b = block(c, name, 2, "test 1", NULL, 0);
  tn_worker_t *w = worker(c, "test 1", name, NULL);
  unsigned long id1, id2;
  run(b, "first", &id1);
  run(b, "second", &id2);
  CHECK_INT(id2, id1 + 1);
  CHECK_RC(tn_cblock_wait(b, id2, 0.1), TN_ETIMEDOUT);
  tn_wslot_t *s[2];
  CHECK_RC(tn_worker_claim(w, 5, &s[0]), TN_OK);
  CHECK_RC(tn_worker_claim(w, 5, &s[1]), TN_OK);
  CHECK(tn_wslot_index(s[0]) != tn_wslot_index(s[1]));
  CHECK_INT(tn_wslot_size(s[0]), 2);
  tn_wslot_t *none;
  CHECK_RC(tn_worker_claim(w, 0.2, &none), TN_ETIMEDOUT); /* all held */
  for (int k = 0; k < 2; k++) {
    tn_wjob_t job;
    char want[32];
    CHECK_RC(tn_wslot_take(s[k], 5, &job), TN_OK);
    CHECK_INT(job.run, id1);
    CHECK(same(job.job, "first"));
    snprintf(want, sizeof want, "r%d-%lu", tn_wslot_index(s[k]), job.run);
    finish(s[k], &job, want);
    CHECK_RC(tn_wslot_take(s[k], 5, &job), TN_OK);
    CHECK_INT(job.run, id2);
    CHECK(same(job.job, "second"));
    snprintf(want, sizeof want, "r%d-%lu", tn_wslot_index(s[k]), job.run);
    finish(s[k], &job, want);
    CHECK_RC(tn_wslot_take(s[k], 0.1, &job), TN_ETIMEDOUT);
  }
  CHECK_RC(tn_cblock_wait(b, id2, 5), TN_OK);
  tn_job_status_t st[2];
  int expired = -1;
  CHECK_RC(tn_cblock_status(b, id1, 1, 2, st, &expired), TN_OK);
  CHECK_INT(expired, 0);
  CHECK_INT(st[0].state, TN_JOB_OK);
  CHECK(same(st[0].value, "r1-1"));
  CHECK_INT(st[1].state, TN_JOB_OK);
  CHECK(same(st[1].value, "r2-1"));
  tn_job_status_clear(st, 2);
  for (int k = 0; k < 2; k++) tn_wslot_release(s[k]);
  CHECK_RC(tn_cblock_terminate(b), TN_OK);
  tn_blob_t *j = text("late");
  unsigned long id;
  CHECK_RC(tn_cblock_run(b, j, &id), TN_ETERMINATED);
  tn_blob_release(j);
  tn_worker_free(w);
  tn_cblock_free(b);
}

TEST(jobs_fence, "a worker whose lease was taken over cannot store its "
                 "result: the job's one status is 'worker lost'") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("fence");
  tn_cblock_t *b = block(c, name, 1, "test 1", NULL, 0);
  tn_worker_t *w1 = worker(c, "test 1", name, NULL);
  tn_worker_t *w2 = worker(c, "test 1", name, NULL);
  unsigned long id1, id2;
  run(b, "one", &id1);
  run(b, "two", &id2);
  tn_wslot_t *s1, *s2;
  tn_wjob_t job, job2;
  CHECK_RC(tn_worker_claim(w1, 5, &s1), TN_OK);
  CHECK_RC(tn_wslot_take(s1, 5, &job), TN_OK);
  /* The lease expires (a stalled worker): deleted by hand. */
  char own[600];
  snprintf(own, sizeof own, "tunnel-ctest-jobs:block:%s:own:1", name);
  CHECK_INT(raw("DEL %s", own, NULL), 1);
  /* Another worker claims the slot: the job in flight is lost first. */
  CHECK_RC(tn_worker_claim(w2, 5, &s2), TN_OK);
  CHECK_RC(tn_wslot_take(s2, 5, &job2), TN_OK);
  CHECK_INT(job2.run, id2); /* not run again */
  tn_blob_t *v = text("too late");
  CHECK_RC(tn_wslot_finish(s1, &job, 1, v), TN_ECLOSED);
  tn_blob_release(v);
  tn_blob_release(job.job);
  finish(s2, &job2, "ok");
  CHECK_RC(tn_cblock_wait(b, id2, 5), TN_OK);
  tn_job_status_t st;
  CHECK_RC(tn_cblock_status(b, id1, 1, 1, &st, NULL), TN_OK);
  CHECK_INT(st.state, TN_JOB_LOST);
  CHECK(st.message != NULL && strstr(st.message, "worker lost: ") != NULL &&
        strstr(st.message, tn_worker_id(w1)) != NULL);
  tn_job_status_clear(&st, 1);
  CHECK_RC(tn_cblock_status(b, id2, 1, 1, &st, NULL), TN_OK);
  CHECK_INT(st.state, TN_JOB_OK);
  tn_job_status_clear(&st, 1);
  tn_wslot_release(s1);
  tn_wslot_release(s2);
  tn_worker_free(w1);
  tn_worker_free(w2);
  tn_cblock_free(b);
}

TEST(jobs_reaped_by_waiter, "a client waiting reports the job of a worker "
                            "whose lease ran out, with no other worker") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("reap");
  tn_cblock_t *b = block(c, name, 1, "test 1", NULL, 1);
  tn_worker_t *w = worker(c, "test 1", name, NULL);
  unsigned long id;
  run(b, "x", &id);
  tn_wslot_t *s;
  tn_wjob_t job;
  CHECK_RC(tn_worker_claim(w, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_OK);
  char own[600];
  snprintf(own, sizeof own, "tunnel-ctest-jobs:block:%s:own:1", name);
  CHECK_INT(raw("DEL %s", own, NULL), 1); /* as if it had died */
  double t0 = test_now();
  CHECK_RC(tn_cblock_wait(b, id, 10), TN_OK);
  CHECK(test_now() - t0 < 10);
  tn_job_status_t st;
  CHECK_RC(tn_cblock_status(b, id, 1, 1, &st, NULL), TN_OK);
  CHECK_INT(st.state, TN_JOB_LOST);
  tn_job_status_clear(&st, 1);
  tn_blob_t *v = text("late");
  CHECK_RC(tn_wslot_finish(s, &job, 1, v), TN_ECLOSED);
  tn_blob_release(v);
  tn_blob_release(job.job);
  tn_wslot_release(s);
  tn_worker_free(w);
  tn_cblock_free(b);
}

TEST(jobs_replay, "a run id pushed again into a slot's queue is not run "
                  "twice") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("replay");
  tn_cblock_t *b = block(c, name, 1, "test 1", NULL, 0);
  tn_worker_t *w = worker(c, "test 1", name, NULL);
  unsigned long id;
  run(b, "once", &id);
  tn_wslot_t *s;
  tn_wjob_t job;
  CHECK_RC(tn_worker_claim(w, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_OK);
  finish(s, &job, "done");
  char q[600];
  snprintf(q, sizeof q, "tunnel-ctest-jobs:block:%s:q:1", name);
  CHECK_INT(raw("RPUSH %s %s", q, "1"), 1);
  CHECK_RC(tn_wslot_take(s, 0.2, &job), TN_ETIMEDOUT);
  CHECK_INT(raw("LLEN %s", q, NULL), 0);
  tn_wslot_release(s);
  tn_worker_free(w);
  tn_cblock_free(b);
}

TEST(jobs_cancel, "cancel drops a queued job with the status 'cancelled' "
                  "and asks the thread running a job to stop") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("cancel");
  tn_cblock_t *b = block(c, name, 1, "test 1", NULL, 0);
  tn_worker_t *w = worker(c, "test 1", name, NULL);
  unsigned long id1, id2;
  run(b, "running", &id1);
  run(b, "queued", &id2);
  tn_cancel_t *token;
  CHECK_RC(tn_cancel_new(&token), TN_OK);
  tn_cancel_t *old = tn_cancel_enter(token);
  tn_wslot_t *s;
  tn_wjob_t job;
  CHECK_RC(tn_worker_claim(w, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_OK);
  int reached = -1;
  CHECK_RC(tn_cblock_cancel(b, id2, &reached), TN_OK);
  CHECK_INT(reached, 1);
  CHECK_RC(tn_cblock_cancel(b, id1, &reached), TN_OK);
  CHECK_INT(reached, 1);
  /* The heartbeat hands the cancel to this thread's token. */
  double t0 = test_now();
  while (!tn_cancel_requested(token) && test_now() - t0 < 10) usleep(10000);
  CHECK(tn_cancel_requested(token));
  tn_blob_t *v = text("stopped");
  CHECK_RC(tn_wslot_finish(s, &job, 0, v), TN_OK);
  tn_blob_release(v);
  tn_blob_release(job.job);
  CHECK(!tn_cancel_requested(token)); /* cleared for the next job */
  CHECK_RC(tn_cblock_wait(b, id2, 5), TN_OK);
  tn_job_status_t st[1];
  CHECK_RC(tn_cblock_status(b, id2, 1, 1, st, NULL), TN_OK);
  CHECK_INT(st[0].state, TN_JOB_CANCELLED);
  CHECK(st[0].message != NULL && strcmp(st[0].message, "cancelled") == 0);
  tn_job_status_clear(st, 1);
  CHECK_RC(tn_cblock_status(b, id1, 1, 1, st, NULL), TN_OK);
  CHECK_INT(st[0].state, TN_JOB_FAILED);
  tn_job_status_clear(st, 1);
  CHECK_RC(tn_wslot_take(s, 0.1, &job), TN_ETIMEDOUT); /* never runs */
  tn_wslot_release(s);
  tn_cancel_enter(old);
  tn_cancel_free(token);
  tn_worker_free(w);
  tn_cblock_free(b);
}

TEST(jobs_refused, "a worker refuses a job of another runtime or secret with "
                   "a status that says why, and gives the slot back") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  static const struct {
    const char *client, *worker;      /* secrets */
    const char *runtime;              /* the worker's */
    const char *why;
  } cases[] = {
      {NULL, NULL, "test 2", "needs test 1; worker "},
      {NULL, "a secret of sixteen bytes or more", "test 1", "unsigned job"},
      {"a secret of sixteen bytes or more", NULL, "test 1", "is signed"},
      {"a secret of sixteen bytes or more", "another secret, as long as that",
       "test 1", "bad signature"},
  };
  enum { N = sizeof cases / sizeof cases[0] };
  tn_cblock_t *b[N];
  tn_worker_t *w[N];
  unsigned long id[N];
  for (size_t k = 0; k < N; k++) { /* all at once: they wait together */
    const char *name = test_fresh("refuse");
    b[k] = block(c, name, 1, "test 1", cases[k].client, 0);
    w[k] = worker(c, cases[k].runtime, name, cases[k].worker);
    run(b[k], "job", &id[k]);
  }
  for (size_t k = 0; k < N; k++) {
    tn_wslot_t *s;
    tn_wjob_t job;
    /* Claimed once the job waited (a worker that can run it goes first). */
    CHECK_RC(tn_worker_claim(w[k], 10, &s), TN_OK);
    CHECK_RC(tn_wslot_take(s, 5, &job), TN_ECLOSED);
    tn_wslot_release(s);
    tn_job_status_t st;
    CHECK_RC(tn_cblock_status(b[k], id[k], 1, 1, &st, NULL), TN_OK);
    CHECK_INT(st.state, TN_JOB_REFUSED);
    CHECK(st.message != NULL && strncmp(st.message, "refused: ", 9) == 0 &&
          strstr(st.message, cases[k].why) != NULL);
    if (st.message != NULL && strstr(st.message, cases[k].why) == NULL)
      printf("# %s\n", st.message);
    tn_job_status_clear(&st, 1);
    tn_worker_free(w[k]);
    tn_cblock_free(b[k]);
  }
}

TEST(jobs_signed_results, "a signed block's results verify, and one whose "
                          "bytes were changed on the server is refused") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *secret = "the fleet's secret, sixteen+";
  const char *name = test_fresh("signed");
  tn_cblock_t *b = block(c, name, 1, "test 1", secret, 0);
  tn_worker_t *w = worker(c, "test 1", name, secret);
  unsigned long id;
  run(b, "job", &id);
  tn_wslot_t *s;
  tn_wjob_t job;
  CHECK_RC(tn_worker_claim(w, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_OK);
  CHECK(same(job.job, "job"));
  finish(s, &job, "result");
  tn_job_status_t st;
  CHECK_RC(tn_cblock_status(b, id, 1, 1, &st, NULL), TN_OK);
  CHECK_INT(st.state, TN_JOB_OK);
  CHECK(same(st.value, "result"));
  tn_job_status_clear(&st, 1);
  /* Flip the last byte of the stored value (its HMAC). */
  char rk[600];
  snprintf(rk, sizeof rk, "tunnel-ctest-jobs:block:%s:r:%lu", name, id);
  tn_url_t u;
  CHECK_RC(tn_url_parse(getenv("TUNNEL_REDIS_URL"), &u), TN_OK);
  redisContext *ctx = redisConnect(u.host, u.port);
  redisReply *r = redisCommand(ctx, "HGET %s 1", rk);
  CHECK(r != NULL && r->type == REDIS_REPLY_STRING && r->len > 2);
  if (r != NULL && r->type == REDIS_REPLY_STRING && r->len > 2) {
    r->str[r->len - 1] ^= 1;
    freeReplyObject(redisCommand(ctx, "HSET %s 1 %b", rk, r->str, r->len));
  }
  if (r != NULL) freeReplyObject(r);
  redisFree(ctx);
  tn_url_free(&u);
  CHECK_RC(tn_cblock_status(b, id, 1, 1, &st, NULL), TN_OK);
  CHECK_INT(st.state, TN_JOB_REFUSED);
  CHECK(st.message != NULL && strstr(st.message, "bad signature") != NULL);
  tn_job_status_clear(&st, 1);
  tn_wslot_release(s);
  tn_worker_free(w);
  tn_cblock_free(b);
}

TEST(jobs_expire, "a run's results expire ttl after its last status") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("ttl");
  tn_cblock_options_t o = {"test 1", NULL, 0, 1, 0, NULL, 0};
  tn_cblock_t *b;
  CHECK_RC(tn_cblock_open(c, name, 1, &o, &b), TN_OK);
  tn_worker_t *w = worker(c, "test 1", name, NULL);
  unsigned long id;
  run(b, "job", &id);
  tn_wslot_t *s;
  tn_wjob_t job;
  CHECK_RC(tn_worker_claim(w, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_OK);
  finish(s, &job, "soon gone");
  tn_job_status_t st;
  int expired = -1;
  CHECK_RC(tn_cblock_status(b, id, 1, 1, &st, &expired), TN_OK);
  CHECK_INT(st.state, TN_JOB_OK);
  CHECK_INT(expired, 0);
  tn_job_status_clear(&st, 1);
  usleep(2200 * 1000);
  CHECK_RC(tn_cblock_status(b, id, 1, 1, &st, &expired), TN_OK);
  CHECK_INT(st.state, TN_JOB_PENDING);
  CHECK_INT(expired, 1);
  tn_wslot_release(s);
  tn_worker_free(w);
  tn_cblock_free(b);
}

TEST(jobs_status, "tn_jobs_status lists the workers, the blocks with their "
                  "queued jobs, and what each slot runs") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("status");
  tn_cblock_t *b = block(c, name, 2, "test 1", NULL, 0);
  tn_worker_t *w = worker(c, "test 1", name, NULL);
  unsigned long id;
  run(b, "a", &id);
  run(b, "b", &id);
  tn_wslot_t *s;
  tn_wjob_t job;
  CHECK_RC(tn_worker_claim(w, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_OK);
  tn_jobs_status_t *st;
  CHECK_RC(tn_jobs_status(c, &st), TN_OK);
  int found_w = 0, found_b = 0;
  for (size_t i = 0; i < st->nworkers; i++)
    if (strcmp(st->workers[i].id, tn_worker_id(w)) == 0) {
      found_w = 1;
      CHECK(st->workers[i].alive);
      CHECK_INT(st->workers[i].pid, getpid());
      CHECK(strstr(st->workers[i].slots, name) != NULL);
      CHECK(strcmp(st->workers[i].runtime, "test 1") == 0);
    }
  for (size_t i = 0; i < st->nblocks; i++)
    if (strcmp(st->blocks[i].name, name) == 0) {
      const tn_jobs_block_t *x = &st->blocks[i];
      int k = tn_wslot_index(s) - 1;
      found_b = 1;
      CHECK_INT(x->size, 2);
      CHECK_INT(x->runs, 2);
      CHECK_INT(x->queued[k], 1);
      CHECK_INT(x->queued[1 - k], 2);
      CHECK_INT(x->running[k], 1);
      CHECK(x->owner[k] != NULL && strcmp(x->owner[k], tn_worker_id(w)) == 0);
    }
  CHECK(found_w);
  CHECK(found_b);
  tn_jobs_status_free(st);
  finish(s, &job, "x");
  tn_wslot_release(s);
  tn_worker_free(w);
  tn_cblock_free(b);
}

TEST(jobs_mac, "signatures frame their pieces and domains: no two messages "
               "share one, and secrets under 16 bytes are refused") {
  rd_keys_t k, k2;
  CHECK_RC(rd_keys_init(&k, "short", 5), TN_EINVAL);
  CHECK_RC(rd_keys_init(&k, "sixteen bytes ok", 16), TN_OK);
  CHECK_RC(rd_keys_init(&k2, "sixteen bytes ok!", 17), TN_OK);
  CHECK(strlen(k.kid) == RD_KID_LEN && strcmp(k.kid, k2.kid) != 0);
  CHECK(memcmp(k.job, k.result, RD_MAC_LEN) != 0);
  unsigned char m1[RD_MAC_LEN], m2[RD_MAC_LEN];
  rd_piece_t a[2] = {{"ab", 2}, {"c", 1}}, b[2] = {{"a", 1}, {"bc", 2}};
  rd_mac(k.job, "job", a, 2, m1);
  rd_mac(k.job, "job", b, 2, m2);
  CHECK(memcmp(m1, m2, RD_MAC_LEN) != 0);
  CHECK(rd_mac_check(k.job, "job", a, 2, m1, RD_MAC_LEN));
  CHECK(!rd_mac_check(k.job, "result", a, 2, m1, RD_MAC_LEN));
  CHECK(!rd_mac_check(k2.job, "job", a, 2, m1, RD_MAC_LEN));
  CHECK(!rd_mac_check(k.job, "job", a, 2, m1, RD_MAC_LEN - 1));
  m1[0] ^= 1;
  CHECK(!rd_mac_check(k.job, "job", a, 2, m1, RD_MAC_LEN));
}

TEST(jobs_release_gives_back, "a slot given back after its finish took the "
                              "next job puts that job back: it runs once, "
                              "on the next holder, not 'lost'") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("giveback");
  tn_cblock_t *b = block(c, name, 1, "test 1", NULL, 0);
  tn_worker_t *w1 = worker(c, "test 1", name, NULL);
  tn_worker_t *w2 = worker(c, "test 1", name, NULL);
  unsigned long id1, id2;
  run(b, "one", &id1);
  run(b, "two", &id2);
  tn_wslot_t *s;
  tn_wjob_t job;
  CHECK_RC(tn_worker_claim(w1, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_OK);
  finish(s, &job, "first"); /* takes run 2 in the same script */
  tn_wslot_release(s);      /* as a worker that stops would */
  CHECK_RC(tn_worker_claim(w2, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_OK);
  CHECK_INT(job.run, id2);
  finish(s, &job, "second");
  CHECK_RC(tn_cblock_wait(b, id2, 5), TN_OK);
  tn_job_status_t st;
  CHECK_RC(tn_cblock_status(b, id2, 1, 1, &st, NULL), TN_OK);
  CHECK_INT(st.state, TN_JOB_OK);
  CHECK(same(st.value, "second"));
  tn_job_status_clear(&st, 1);
  tn_wslot_release(s);
  tn_worker_free(w1);
  tn_worker_free(w2);
  tn_cblock_free(b);
}

TEST(jobs_refused_waits, "a job a live capable worker could run waits for "
                         "it: another runtime's worker refuses it only once "
                         "no such worker is registered") {
  tn_cluster_t *c = test_cluster("tunnel-ctest-jobs:");
  if (c == NULL) return;
  const char *name = test_fresh("waits");
  tn_cblock_t *b = block(c, name, 2, "test 1", NULL, 0);
  tn_worker_t *able = worker(c, "test 1", name, NULL);
  tn_worker_t *other = worker(c, "test 2", name, NULL);
  unsigned long id;
  run(b, "job", &id);
  tn_wslot_t *held, *s;
  tn_wjob_t job;
  /* The capable worker is busy with slot 1 (it holds it). */
  CHECK_RC(tn_worker_claim(able, 5, &held), TN_OK);
  CHECK_RC(tn_wslot_take(held, 5, &job), TN_OK);
  /* Slot 2's job waits past the grace: not refused while `able` lives. */
  CHECK_RC(tn_worker_claim(other, 3, &s), TN_ETIMEDOUT);
  finish(held, &job, "done");
  tn_wslot_release(held);
  tn_worker_free(able); /* gone: now the job is refused */
  CHECK_RC(tn_worker_claim(other, 5, &s), TN_OK);
  CHECK_RC(tn_wslot_take(s, 5, &job), TN_ECLOSED);
  tn_wslot_release(s);
  tn_job_status_t st[2];
  CHECK_RC(tn_cblock_status(b, id, 1, 2, st, NULL), TN_OK);
  CHECK(st[0].state == TN_JOB_REFUSED || st[1].state == TN_JOB_REFUSED);
  CHECK(st[0].state == TN_JOB_OK || st[1].state == TN_JOB_OK);
  tn_job_status_clear(st, 2);
  tn_worker_free(other);
  tn_cblock_free(b);
}
