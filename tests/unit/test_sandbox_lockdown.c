/*
 * The sandbox's lockdown on its own (lib/sandbox/lockdown.c): a forked child
 * locks itself down as the worker does, then tries one action. Everything a
 * scan needs must work; every forbidden call (open, socket, exec, writes to
 * files, executable or shared mappings, signals or ptrace to others, another
 * socket, getting root back) must kill it with SIGSYS.
 */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "khx.h"
#include "sandbox_int.h"

/* ------------------------------------------------------------------------ */
/* The lockdown                                                              */
/* ------------------------------------------------------------------------ */

enum act {
    ACT_ALLOWED, /* everything a scan needs; must exit 0 */
    ACT_OPEN,
    ACT_OPENAT,
    ACT_SOCKET,
    ACT_WRITE_FILE,
    ACT_PWRITE_FILE,
    ACT_EXECVE,
    ACT_FORK,
    ACT_KILL_OTHER,
    ACT_PTRACE,
    ACT_MMAP_EXEC,
    ACT_MPROTECT_EXEC,
    ACT_MMAP_SHARED,
    ACT_SENDMSG_OTHER,
    ACT_SETUID_BACK,
    ACT_COUNT
};

/* clang-format off */
static const char *const act_names[] = {
    "allowed calls", "open", "openat", "socket", "write to a file", "pwrite to a file", "execve",
    "fork", "kill", "ptrace", "mmap PROT_EXEC", "mprotect PROT_EXEC", "mmap MAP_SHARED",
    "sendmsg on another socket", "setuid(0)",
};
/* clang-format on */
_Static_assert(KHX_ARRAY_LEN(act_names) == ACT_COUNT, "one name per action");

/* Runs in the locked-down child; returns its exit code. */
static int child_act(enum act a, int sock, int file_fd, int pipe_fd, int other_sock, pid_t parent)
{
    switch (a) {
    case ACT_ALLOWED: {
        uint8_t b[16];
        struct stat st;
        if (read(pipe_fd, b, 4) != 4)
            return 10;
        if (pread(file_fd, b, 4, 0) != 4 || memcmp(b, "data", 4) != 0)
            return 11;
        if (syscall(SYS_fstat, file_fd, &st) != 0 || st.st_size != 4)
            return 12;
        void *m = mmap(NULL, 4, PROT_READ, MAP_PRIVATE, file_fd, 0);
        if (m == MAP_FAILED || memcmp(m, "data", 4) != 0 || munmap(m, 4) != 0)
            return 13;
        void *big = malloc(64u << 20); /* mmap'd by malloc */
        if (big == NULL)
            return 14;
        memset(big, 1, 64u << 20);
        free(big);
        if (write(2, "", 0) != 0)
            return 15;
        struct iovec iov = {"hi", 2};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (sendmsg(sock, &msg, MSG_NOSIGNAL) != 2)
            return 16;
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
            return 17;
        return 0;
    }
    case ACT_OPEN:
#ifdef SYS_open
        syscall(SYS_open, "/etc/hostname", O_RDONLY);
#else
        open("/etc/hostname", O_RDONLY);
#endif
        return 0;
    case ACT_OPENAT:
        open("/etc/hostname", O_RDONLY);
        return 0;
    case ACT_SOCKET:
        socket(AF_INET, SOCK_STREAM, 0);
        return 0;
    case ACT_WRITE_FILE:
        return write(file_fd, "x", 1) == 1 ? 0 : 1;
    case ACT_PWRITE_FILE:
        return pwrite(file_fd, "x", 1, 0) == 1 ? 0 : 1;
    case ACT_EXECVE: {
        char *argv[] = {"/bin/true", NULL};
        execve("/bin/true", argv, NULL);
        return 0;
    }
    case ACT_FORK:
        return fork() >= 0 ? 0 : 1;
    case ACT_KILL_OTHER:
        kill(parent, 0);
        return 0;
    case ACT_PTRACE:
        ptrace(PTRACE_ATTACH, parent, NULL, NULL);
        return 0;
    case ACT_MMAP_EXEC:
        mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return 0;
    case ACT_MPROTECT_EXEC: {
        void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        mprotect(m, 4096, PROT_READ | PROT_EXEC);
        return 0;
    }
    case ACT_MMAP_SHARED: {
        void *m = mmap(NULL, 4, PROT_READ | PROT_WRITE, MAP_SHARED, file_fd, 0);
        if (m != MAP_FAILED)
            memcpy(m, "evil", 4);
        return 0;
    }
    case ACT_SENDMSG_OTHER: {
        struct iovec iov = {"hi", 2};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        sendmsg(other_sock, &msg, MSG_NOSIGNAL);
        return 0;
    }
    case ACT_SETUID_BACK:
        return setuid(0) == 0 ? 1 : 0;
    default:
        return 99;
    }
}

static void sandbox_lockdown_kills_forbidden_calls(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *path = tu_write(dir, "file", "data", 4);
    for (int a = 0; a < ACT_COUNT; a++) {
        int sv[2], other[2], pp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, other), 0);
        assert_int_equal(pipe(pp), 0);
        assert_int_equal(write(pp[1], "pipe", 4), 4);
        int file_fd = open(path, O_RDWR);
        assert_true(file_fd >= 0);
        fflush(NULL);
        pid_t parent = getpid();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char err[256];
            int keep[] = {file_fd, pp[0], other[0]};
            struct sbx_lockdown ld = {sv[1], keep, 3, NULL, 64, 0};
            if (sbx_lockdown(&ld, err, sizeof(err)) != 0) {
                fprintf(stderr, "lockdown: %s\n", err);
                _exit(98);
            }
            /* exit_group directly: a sanitizer's _exit hook makes calls
             * the filter forbids. */
            syscall(SYS_exit_group,
                    child_act((enum act)a, sv[1], file_fd, pp[0], other[0], parent));
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        close(sv[0]);
        close(sv[1]);
        close(other[0]);
        close(other[1]);
        close(pp[0]);
        close(pp[1]);
        close(file_fd);
        int sys = WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
        printf("%-26s -> %s", act_names[a],
               sys                   ? "killed (SIGSYS)\n"
               : WIFSIGNALED(status) ? "killed by another signal"
                                     : "exited");
        if (!sys)
            printf(" %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        if (a == ACT_ALLOWED || a == ACT_SETUID_BACK) {
            /* setuid(0) is not in the filter either; as root the drop must
             * have made it fail first, otherwise SIGSYS is just as good. */
            assert_true((WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                        (a == ACT_SETUID_BACK && sys));
        } else {
            assert_true(sys);
        }
    }
    /* The file was never written through the shared mapping. */
    char back[8] = "";
    int fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, back, sizeof(back)), 4);
    close(fd);
    assert_memory_equal(back, "data", 4);
    free(path);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sandbox_lockdown_kills_forbidden_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
