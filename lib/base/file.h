// file.h: closing a stdio file and knowing whether everything written to it
// arrived (a log, standard output, an output file).
#ifndef NS_FILE_H
#define NS_FILE_H

#include <stdio.h>

// Flushes and closes f. Returns 0, or the errno of a write error met on the
// way (EIO when unknown), one that an earlier failed fflush left behind included.
int ns_file_close(FILE *f);

#endif
