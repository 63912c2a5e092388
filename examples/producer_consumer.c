/*
** producer_consumer.c - the seed problem with tunnel's C API alone.
**
** Two producer threads each make 6 products (thread * 1000 + i); three
** consumer threads each take 4. They meet in a deque whose size hint is 4:
** a producer that finds 4 products waiting blocks until a consumer takes
** one. Every line goes through one printer, so lines never mix:
**
**     produce <thread> <i> <product>
**     consume <thread> <i> <product>
**
** (tab separated, 24 lines in all; the order varies from run to run).
**
** Build and run:  make build/examples/producer_consumer
**                 build/examples/producer_consumer
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel.h"

enum { PRODUCERS = 2, CONSUMERS = 3, PER_PRODUCER = 6, PER_CONSUMER = 4 };

/* What every thread shares. The threads come from two tn_blocks: a block
** is a group of threads that each run the jobs it is given. */
typedef struct shop {
  tn_deque_t *shelf;      /* the products between the two sides */
  tn_printer_t *printer;  /* one line at a time */
} shop_t;

/* Print one line, whole. A failure to print is not worth stopping for. */
static void say(shop_t *shop, const char *verb, int thread, int i,
                int64_t product) {
  char line[64];
  int n = snprintf(line, sizeof line, "%s\t%d\t%d\t%lld\n", verb, thread, i,
                   (long long)product);
  tn_printer_write(shop->printer, line, (size_t)n, TN_FOREVER);
}

/* Abort on the impossible: in this example every call must succeed. */
static void check(int rc, const char *what) {
  if (rc != TN_OK) {
    fprintf(stderr, "%s: %s\n", what, tn_strerror(rc));
    exit(1);
  }
}

/*
** A producer: a job run by each thread of the producers' block. `thread`
** is that thread's number (1..PRODUCERS). Values travel as blobs: byte
** strings the deque never looks into; here, one int64_t each.
*/
static void produce(void *ctx, int thread, void *arg) {
  (void)ctx; /* no per-thread context: the block has no start hook */
  shop_t *shop = arg;
  for (int i = 1; i <= PER_PRODUCER; i++) {
    int64_t product = thread * 1000 + i;
    tn_blob_t *blob = tn_blob_new(&product, sizeof product, NULL, 0);
    if (blob == NULL) check(TN_ENOMEM, "tn_blob_new");
    say(shop, "produce", thread, i, product);
    /* Waits while the shelf holds 4 products. On success the deque owns
    ** our reference to the blob; we must not release it. */
    check(tn_deque_push_back(shop->shelf, blob, TN_FOREVER), "push");
  }
}

/* A consumer: takes its share, slowly, so the producers have to wait. */
static void consume(void *ctx, int thread, void *arg) {
  (void)ctx;
  shop_t *shop = arg;
  for (int i = 1; i <= PER_CONSUMER; i++) {
    tn_blob_t *blob = NULL;
    /* Waits while the shelf is empty. The reference becomes ours. */
    check(tn_deque_pop_front(shop->shelf, &blob, TN_FOREVER), "pop");
    int64_t product;
    memcpy(&product, tn_blob_data(blob), sizeof product);
    tn_blob_release(blob);
    say(shop, "consume", thread, i, product);
    tn_sleep(0.2);
  }
}

int main(void) {
  shop_t shop;
  check(tn_deque_new(4, &shop.shelf), "tn_deque_new");
  check(tn_printer_new(stdout, &shop.printer), "tn_printer_new");

  tn_block_t *producers, *consumers;
  check(tn_block_new(PRODUCERS, NULL, NULL, &producers), "tn_block_new");
  check(tn_block_new(CONSUMERS, NULL, NULL, &consumers), "tn_block_new");

  /* One run = the job once on every thread of the block. No release
  ** function: `shop` lives on main's stack until the blocks are done. */
  check(tn_block_run(consumers, consume, &shop, NULL), "run consumers");
  check(tn_block_run(producers, produce, &shop, NULL), "run producers");

  /* Free waits for the queued jobs, stops and joins the threads. */
  tn_block_free(producers);
  tn_block_free(consumers);

  /* Structures are reference counted: drop ours and they are freed. */
  tn_object_release(TN_OBJECT(shop.shelf));
  tn_object_release(TN_OBJECT(shop.printer));
  return 0;
}
