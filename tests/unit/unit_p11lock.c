/* SPDX-License-Identifier: MIT */
/* Unit tests for the token-file lock (kh_p11lock.h): how SoftHSM's module
 * and token directory are recognised, and what another process sees while
 * a section is held (shared, exclusive, nested, none). No token needed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kh_p11lock.h"

#include "kh_check.h"

static char tmp[] = "/tmp/kh-unit-p11lock.XXXXXX";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void test_recognise(void)
{
    char path[512], link[512];

    CHECK(kh_p11lock_is_softhsm("/usr/lib/softhsm/libsofthsm2.so"));
    CHECK(kh_p11lock_is_softhsm("libsofthsm2.so"));
    CHECK(!kh_p11lock_is_softhsm(
        "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"));
    CHECK(!kh_p11lock_is_softhsm("/opt/softhsm-like/libvendor.so"));
    CHECK(!kh_p11lock_is_softhsm(NULL));
    /* A link with another name to a file named like SoftHSM's module. */
    snprintf(path, sizeof(path), "%s/libsofthsm2.so", tmp);
    snprintf(link, sizeof(link), "%s/libtoken.so", tmp);
    write_file(path, "");
    CHECK(symlink(path, link) == 0);
    CHECK(kh_p11lock_is_softhsm(link));
    unlink(link);
    unlink(path);
}

static void test_tokendir(void)
{
    char conf[600], home[512], dir[512];

    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", tmp);
    write_file(conf, "# directories.tokendir = /commented/out\n"
                     "objectstore.backend = file\n"
                     "  directories.tokendir   =  /var/lib/t tokens/  \n"
                     "log.level = ERROR # trailing comment\n");
    setenv("SOFTHSM2_CONF", conf, 1);
    CHECK(kh_p11lock_tokendir(dir, sizeof(dir)));
    CHECK(strcmp(dir, "/var/lib/t tokens/") == 0);
    CHECK(!kh_p11lock_tokendir(dir, 8)); /* does not fit */

    write_file(conf, "objectstore.backend = file\n");
    CHECK(!kh_p11lock_tokendir(dir, sizeof(dir)));
    unlink(conf);
    setenv("SOFTHSM2_CONF", "/nonexistent/softhsm2.conf", 1);
    CHECK(!kh_p11lock_tokendir(dir, sizeof(dir)));

    /* Without SOFTHSM2_CONF, the user's configuration comes first. */
    unsetenv("SOFTHSM2_CONF");
    snprintf(home, sizeof(home), "%s/.config/softhsm2", tmp);
    snprintf(dir, sizeof(dir), "%s/.config", tmp);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(mkdir(home, 0700) == 0);
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", home);
    write_file(conf, "directories.tokendir=/home/tokens\n");
    setenv("HOME", tmp, 1);
    CHECK(kh_p11lock_tokendir(dir, sizeof(dir)));
    CHECK(strcmp(dir, "/home/tokens") == 0);
    unlink(conf);
    rmdir(home);
    snprintf(dir, sizeof(dir), "%s/.config", tmp);
    rmdir(dir);
}

/*
 * What a separate process finds when it tries the directory's lock now:
 * 1 when it could take |how| (LOCK_SH/LOCK_EX) without waiting.
 */
static int other_can(const char *dir, int how)
{
    pid_t pid = fork();
    int st = 0;

    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        _exit(fd >= 0 && flock(fd, how | LOCK_NB) == 0 ? 0 : 1);
    }
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st) == 0;
}

static void test_sections(void)
{
    char dir[512];
    KH_P11LOCK a, b;

    snprintf(dir, sizeof(dir), "%s/tokens", tmp);
    CHECK(mkdir(dir, 0700) == 0);

    /* No directory: nothing to lock, always fine. */
    CHECK(kh_p11lock_enter(&a, NULL, 1) == 1);
    kh_p11lock_leave(&a);
    CHECK(other_can(dir, LOCK_EX) == 1);

    CHECK(kh_p11lock_enter(&a, dir, 0) == 1);
    CHECK(other_can(dir, LOCK_SH) == 1);
    CHECK(other_can(dir, LOCK_EX) == 0);
    kh_p11lock_leave(&a);
    CHECK(other_can(dir, LOCK_EX) == 1);

    CHECK(kh_p11lock_enter(&a, dir, 1) == 1);
    CHECK(other_can(dir, LOCK_SH) == 0);
    /* Entered again by the same thread: rides on the outer section. */
    CHECK(kh_p11lock_enter(&b, dir, 1) == 1);
    kh_p11lock_leave(&b);
    CHECK(other_can(dir, LOCK_SH) == 0);
    kh_p11lock_leave(&a);
    CHECK(other_can(dir, LOCK_EX) == 1);

    /* A directory that cannot be opened: the section goes on without. */
    CHECK(kh_p11lock_enter(&a, "/nonexistent/tokens", 1) == 0);
    kh_p11lock_leave(&a);
    CHECK(kh_p11lock_enter(&a, dir, 1) == 1);
    kh_p11lock_leave(&a);
    rmdir(dir);
}

int main(void)
{
    if (mkdtemp(tmp) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_recognise();
    test_tokendir();
    test_sections();
    rmdir(tmp);
    return kh_check_summary("unit_p11lock");
}
