/*
** blob.c - immutable, reference-counted byte strings with the shared
** objects they refer to. One allocation holds the header, the reference
** array and the bytes.
*/
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct tn_blob {
  atomic_long refs;
  size_t size;
  size_t nrefs;
  tn_object_t **objects;   /* points into this allocation */
  unsigned char *bytes;    /* points into this allocation */
};

tn_blob_t *tn_blob_new(const void *data, size_t len, tn_object_t *const *refs,
                       size_t nrefs) {
  size_t head = sizeof(tn_blob_t) + nrefs * sizeof(tn_object_t *);
  if (nrefs > (SIZE_MAX - sizeof(tn_blob_t)) / sizeof(tn_object_t *) ||
      len > SIZE_MAX - head)
    return NULL;
  tn_blob_t *b = tn_malloc(head + len);
  if (b == NULL) return NULL;
  atomic_init(&b->refs, 1);
  b->size = len;
  b->nrefs = nrefs;
  b->objects = (tn_object_t **)(b + 1);
  b->bytes = (unsigned char *)(b->objects + nrefs);
  for (size_t i = 0; i < nrefs; i++)
    b->objects[i] = tn_object_retain(refs[i]);
  if (len > 0) memcpy(b->bytes, data, len);
  return b;
}

tn_blob_t *tn_blob_retain(tn_blob_t *b) {
  if (b != NULL) atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

void tn_blob_release(tn_blob_t *b) {
  if (b == NULL) return;
  /* acq_rel rather than release + an acquire fence: the same guarantee
  ** (and the same instruction on x86), and ThreadSanitizer, which does not
  ** model fences, can see it. */
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < b->nrefs; i++) tn_object_release(b->objects[i]);
  tn_free(b);
}

const void *tn_blob_data(const tn_blob_t *b) { return b->bytes; }
size_t tn_blob_size(const tn_blob_t *b) { return b->size; }
size_t tn_blob_nrefs(const tn_blob_t *b) { return b->nrefs; }

tn_object_t *tn_blob_ref(const tn_blob_t *b, size_t i) {
  return i < b->nrefs ? b->objects[i] : NULL;
}

void tn_blob_array_free(tn_blob_t **items, size_t n) {
  if (items == NULL) return;
  for (size_t i = 0; i < n; i++) tn_blob_release(items[i]);
  tn_free(items);
}
