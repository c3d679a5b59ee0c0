/* The floor of fanotify enforcement for `cargo xtask bench`: a minimal responder that
 * allows every open below one directory, as fast as fanotify allows. Not part of the
 * product; compiled by the bench with the machine's C compiler. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/fanotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    int fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE);
    if (fd < 0 || fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_EVENT_ON_CHILD, AT_FDCWD, argv[1]) < 0) {
        perror("fanotify");
        return 1;
    }
    puts("ready");
    fflush(stdout);
    char buf[8192] __attribute__((aligned(8)));
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return 1;
        }
        struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            if (m->mask & FAN_OPEN_PERM) {
                struct fanotify_response r = {.fd = m->fd, .response = FAN_ALLOW};
                if (write(fd, &r, sizeof r) < 0)
                    return 1;
            }
            if (m->fd >= 0)
                close(m->fd);
        }
    }
}
