// The smallest health probe: connects to the agent's Unix socket, sends one request, reads the
// answer and exits 0 on a 200. scripts/bench-start times `credagent health` against it.
//
//   socket-probe SOCKET PATH      e.g. socket-probe /run/credagent/agent.sock /v1/health
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: socket-probe SOCKET PATH\n");
        return 2;
    }
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof address.sun_path) {
        fprintf(stderr, "socket-probe: socket path too long\n");
        return 2;
    }
    strcpy(address.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("socket-probe: connect");
        return 3;
    }
    char request[512];
    int length = snprintf(request, sizeof request,
                          "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", argv[2]);
    if (length < 0 || (size_t)length >= sizeof request || write(fd, request, (size_t)length) != length) {
        perror("socket-probe: write");
        return 3;
    }
    char answer[4096];
    size_t received = 0;
    ssize_t n;
    while (received < sizeof answer - 1 && (n = read(fd, answer + received, sizeof answer - 1 - received)) > 0)
        received += (size_t)n;
    answer[received] = 0;
    close(fd);
    return strncmp(answer, "HTTP/1.1 200 ", 13) == 0 ? 0 : 1;
}
