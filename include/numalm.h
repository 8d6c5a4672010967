/* numalm's public header. It is being rewritten as a self-contained API
 * (opaque handles, one open -> run call sequence); until then it declares
 * nothing, and programs use the layers' own headers. */
#ifndef NUMALM_H
#define NUMALM_H
#endif
