/*
 * Protecting a mapped .kdb from being overwritten in place.
 *
 * The engine maps its database file. Replacing that file by rename (what
 * `khien db compile` and updates do) is safe: the old inode lives on until it
 * is unmapped. Overwriting it in place (`cp new.kdb live.kdb`) truncates the
 * mapped inode, and the next access to a vanished page kills the process
 * with SIGBUS. To survive that, the engine takes a read lease on the file
 * (fcntl F_SETLEASE): when another process opens it for writing, the kernel
 * holds that writer back and signals us first. The signal handler then
 * copies the image into anonymous memory and moves the copy over the very
 * same addresses (mremap), so every pointer into the image stays valid and
 * scans in progress never notice; then it releases the lease and the writer
 * proceeds. The engine keeps serving the old database from memory until the
 * caller reloads.
 *
 * Leases need the file's owner (or CAP_LEASE) and a local file system; when
 * the kernel refuses one, the engine runs unprotected, as before.
 */
#include "engine_int.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LEASE_SLOTS 256

enum { SLOT_FREE = 0, SLOT_ACTIVE, SLOT_BUSY, SLOT_COPIED };

struct lease_slot {
    atomic_int state;
    int fd;
    void *addr;
    size_t len;
};

static struct lease_slot slots[LEASE_SLOTS];
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static int lease_signal;

/* Runs in signal context: only system calls and plain memory copies. */
static void on_lease_break(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    for (int i = 0; i < LEASE_SLOTS; i++) {
        struct lease_slot *s = &slots[i];
        int expect = SLOT_ACTIVE;
        if (s->fd != si->si_fd || !atomic_compare_exchange_strong(&s->state, &expect, SLOT_BUSY))
            continue;
        void *copy = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (copy != MAP_FAILED) {
            memcpy(copy, s->addr, s->len);
            mprotect(copy, s->len, PROT_READ);
            if (mremap(copy, s->len, s->len, MREMAP_MAYMOVE | MREMAP_FIXED, s->addr) == MAP_FAILED)
                munmap(copy, s->len);
        }
        fcntl(s->fd, F_SETLEASE, F_UNLCK);
        atomic_store(&s->state, SLOT_COPIED);
    }
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_lease_break;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    lease_signal = SIGRTMIN + 7;
    if (sigaction(lease_signal, &sa, NULL) != 0)
        lease_signal = 0;
}

int khx_lease_take(const char *path, const void *addr, size_t len)
{
    pthread_once(&handler_once, install_handler);
    if (lease_signal == 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fcntl(fd, F_SETSIG, lease_signal) != 0 || fcntl(fd, F_SETLEASE, F_RDLCK) != 0) {
        close(fd);
        return -1;
    }
    for (int i = 0; i < LEASE_SLOTS; i++) {
        int expect = SLOT_FREE;
        /* Claim the slot while keeping it invisible to the handler, fill it,
         * then publish it. */
        if (!atomic_compare_exchange_strong(&slots[i].state, &expect, SLOT_BUSY))
            continue;
        slots[i].fd = fd;
        slots[i].addr = (void *)addr;
        slots[i].len = len;
        atomic_store(&slots[i].state, SLOT_ACTIVE);
        return i;
    }
    fcntl(fd, F_SETLEASE, F_UNLCK);
    close(fd);
    return -1;
}

void khx_lease_release(int slot)
{
    if (slot < 0 || slot >= LEASE_SLOTS)
        return;
    struct lease_slot *s = &slots[slot];
    for (;;) {
        int st = atomic_load(&s->state);
        if (st == SLOT_BUSY) {
            /* The handler is copying on another thread: let it finish before
             * the mapping goes away. */
            sched_yield();
            continue;
        }
        if (atomic_compare_exchange_strong(&s->state, &st, SLOT_BUSY))
            break;
    }
    fcntl(s->fd, F_SETLEASE, F_UNLCK);
    close(s->fd);
    s->fd = -1;
    atomic_store(&s->state, SLOT_FREE);
}
