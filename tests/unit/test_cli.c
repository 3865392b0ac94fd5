// test_cli.c: the list parsers of lib/cli/cli.h that programs use on option
// values: ns_parse_sizes (layer widths such as --hidden 256,64).
//
// Good lists give their sizes in order and the count; every bad value is
// refused with -1 and a message naming the bad element (or the count), and
// a refusal writes nothing past the elements it accepted: 0, -1, an empty
// element (leading, trailing, doubled, the whole string), one more than
// max_count, values past max_size and past long, trailing junk, a decimal
// point, an exponent, a sign, spaces.
// sanitize: yes
#include <string.h>

#include "check.h"
#include "cli/cli.h"

// Parses s with room for 4 sizes of at most 1000; 1 when it is refused with
// a message containing `want`.
static int refused(const char *s, const char *want) {
    int out[5] = {-7, -7, -7, -7, -7};
    ns_err err = {0};
    int n = ns_parse_sizes(s, out, 4, 1000, &err);
    if (n != -1 || !strstr(err.msg, want) || out[4] != -7) {
        printf("# %s: got %d, message \"%s\" (wanted \"%s\")\n", s, n, err.msg, want);
        return 0;
    }
    return 1;
}

static void test_good(void) {
    int out[4];
    ns_err err = {0};
    int n = ns_parse_sizes("256", out, 4, 1000, &err);
    CHECK(n == 1 && out[0] == 256, "one size: 256 (got %d sizes, %d)", n, out[0]);
    n = ns_parse_sizes("8,6,1,1000", out, 4, 1000, &err);
    CHECK(n == 4 && out[0] == 8 && out[1] == 6 && out[2] == 1 && out[3] == 1000,
          "four sizes in order, the last at max_size (got %d)", n);
    n = ns_parse_sizes("007,10", out, 4, 1000, &err);
    CHECK(n == 2 && out[0] == 7 && out[1] == 10, "leading zeros are decimal, not octal (got %d: %d)", n, out[0]);
}

static void test_bad(void) {
    CHECK(refused("0", "not a positive integer (0)"), "0 is refused, named");
    CHECK(refused("8,0", "not a positive integer (0)"), "0 after a good size is refused, named");
    CHECK(refused("-1", "not a positive integer (-1)"), "-1 is refused, named");
    CHECK(refused("8,-1,6", "not a positive integer (-1)"), "-1 inside the list is refused, named");
    CHECK(refused("", "an empty list of sizes"), "the empty string is refused");
    CHECK(refused("8,,6", "an empty size in the list (8,,6)"), "an empty element inside is refused");
    CHECK(refused(",8", "an empty size"), "a leading comma is refused");
    CHECK(refused("8,", "an empty size"), "a trailing comma is refused");
    CHECK(refused("1,2,3,4,5", "more than 4 sizes (1,2,3,4,5)"), "one size more than max_count is refused");
    CHECK(refused("1001", "1001 is too large (at most 1000)"), "max_size + 1 is refused");
    CHECK(refused("8,99999999999999999999999", "99999999999999999999999 is too large"),
          "a value past long is refused as too large, not wrapped");
    CHECK(refused("4294967304", "4294967304 is too large"), "2^32 + 8 is refused, not truncated to 8");
    CHECK(refused("12x", "not a positive integer (12x)"), "trailing junk is refused, named");
    CHECK(refused("8,6 ", "not a positive integer (6 )"), "a trailing space is refused");
    CHECK(refused(" 8", "not a positive integer ( 8)"), "a leading space is refused");
    CHECK(refused("+8", "not a positive integer (+8)"), "a sign is refused");
    CHECK(refused("8.0", "not a positive integer (8.0)"), "a decimal point is refused");
    CHECK(refused("1e2", "not a positive integer (1e2)"), "an exponent is refused");
    CHECK(refused("0x10", "not a positive integer (0x10)"), "hexadecimal is refused");
    CHECK(refused("abc", "not a positive integer (abc)"), "a word is refused");
}

int main(void) {
    test_good();
    test_bad();
    return check_done();
}
