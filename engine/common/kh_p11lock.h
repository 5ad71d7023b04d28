/* SPDX-License-Identifier: MIT */
/*
 * The token-file lock: serialises, across every keyhold process (provider
 * in any server, the CLI), the PKCS#11 calls with which SoftHSM reads or
 * rewrites its token files.
 *
 * SoftHSM's file store reads token.object at C_Initialize, C_GetTokenInfo
 * and object look-ups, and rewrites it at every C_Login; a process reading
 * it while another rewrites it loses the token (or its PIN) for the life of
 * its module instance. The lock is flock() on SoftHSM's token directory
 * itself (directories.tokendir of its configuration): no new file, no new
 * permission, nothing for a hardware token. Readers take it shared, writers
 * (C_Login, PIN changes, token and key creation) exclusive.
 *
 * Each section opens the directory afresh and closes it at its end, so a
 * forked child never shares a lock with its parent. Within a process a
 * read-write lock orders threads the same way. Waiting is bounded
 * (KH_P11LOCK_WAIT_MS): after that the section runs without the lock, as
 * before, and never deadlocks a server; sections of the next
 * KH_P11LOCK_NO_WAIT_MS only try once, so a process stuck with the lock
 * costs the others one wait, not one per call. A section entered again by the
 * thread that holds one rides on the outer one.
 */
#ifndef KH_COMMON_P11LOCK_H
#define KH_COMMON_P11LOCK_H

#include <stddef.h>

#define KH_P11LOCK_WAIT_MS 3000
/* After a wait in vain, sections this long try once without waiting. */
#define KH_P11LOCK_NO_WAIT_MS 10000

typedef struct kh_p11lock {
    int fd;             /* the directory, open while held; -1 otherwise */
    int nested;         /* entered inside another section of this thread */
    int rw_held;        /* the in-process lock is held */
    unsigned int gen;   /* fork generation at entry */
} KH_P11LOCK;

/*
 * 1 when |module_path| (a file name or path) is SoftHSM's PKCS#11 module
 * (its name, or the name of the file a symlink points to, contains
 * "softhsm").
 */
int kh_p11lock_is_softhsm(const char *module_path);

/*
 * SoftHSM's token directory as its own configuration names it: the file in
 * $SOFTHSM2_CONF, else ~/.config/softhsm2/softhsm2.conf when it exists,
 * else /etc/softhsm/softhsm2.conf. 1 with |dir| filled, 0 when none is
 * found (no lock then).
 */
int kh_p11lock_tokendir(char *dir, size_t dirlen);

/*
 * Enters a section on the token directory |dir| (NULL: no lock, returns
 * 1). Returns 1 when the lock is held (or not needed), 0 when the section
 * goes on without it (timed out or the directory cannot be opened); in
 * both cases kh_p11lock_leave() ends the section.
 */
int kh_p11lock_enter(KH_P11LOCK *lk, const char *dir, int exclusive);
void kh_p11lock_leave(KH_P11LOCK *lk);

#endif
