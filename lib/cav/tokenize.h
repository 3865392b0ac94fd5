// tokenize.h: the text tower's tokenizer and word vocabulary. Text is
// lowercased (ASCII) and split on every byte that is not a letter or digit;
// bytes >= 0x80 count as letters, so UTF-8 words stay whole. A word longer
// than NS_WORD_MAX bytes is cut to its first NS_WORD_MAX bytes. Word ids
// index the vocabulary; id 0 is always "<unk>", which every word not in the
// vocabulary becomes, and a text with no words at all is the one token <unk>.
#ifndef NS_TOKENIZE_H
#define NS_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define NS_WORD_MAX 63
#define NS_UNK "<unk>"
#define NS_VOCAB_MAX (1 << 22)

typedef struct ns_vocab {
    char **words;    // (n) words; words[0] is "<unk>"
    int32_t n, cap;
    int32_t *slots;  // (nslots) open-addressing table of ids, -1 empty
    size_t nslots;
} ns_vocab;

// A vocabulary holding only <unk>.
int ns_vocab_init(ns_vocab *v, ns_err *err);
void ns_vocab_free(ns_vocab *v);
// Adds word (already a token: lowercase, no separators) unless present;
// *id (may be NULL) receives its id either way.
int ns_vocab_add(ns_vocab *v, const char *word, int32_t *id, ns_err *err);
// The word's id, or 0 (<unk>) when absent.
int32_t ns_vocab_find(const ns_vocab *v, const char *word);
// Adds every word of text, in order of first appearance.
int ns_vocab_add_text(ns_vocab *v, const char *text, ns_err *err);
// A vocabulary from a stored word list: words[0] must be "<unk>", every word
// a token, non-empty, at most NS_WORD_MAX bytes, no repeats.
int ns_vocab_from_words(ns_vocab *v, char *const *words, size_t n, ns_err *err);

// Splits text into words: calls emit(word, ctx) for each (word is
// NUL-terminated, valid during the call). Returns the number of words.
int64_t ns_split_words(const char *text, void (*emit)(const char *word, void *ctx), void *ctx);

// Token ids of text into ids (capacity cap): returns the count (>= 1), or
// more than cap when ids was too small (nothing beyond cap is written).
int64_t ns_tokenize(const ns_vocab *v, const char *text, int32_t *ids, int64_t cap);

// Token lists of many texts, flattened: text i is ids[offsets[i] .. offsets[i+1]).
typedef struct ns_token_lists {
    int32_t *ids;     // (offsets[n])
    int64_t *offsets; // (n + 1)
    int64_t n, cap_ids, cap_texts;
} ns_token_lists;

// Tokenizes n texts into t (its buffers grow as needed; zero it first). The
// text tower's input: unknown words are left out (a template's words the
// training captions never had add nothing), and a text of unknown words only
// is the one token <unk>.
int ns_token_lists_fill(ns_token_lists *t, const ns_vocab *v, const char *const *texts, int64_t n,
                        ns_err *err);
void ns_token_lists_free(ns_token_lists *t);

#endif
