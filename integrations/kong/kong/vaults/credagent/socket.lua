-- One request to the agent over its Unix socket, from any phase: an OpenResty cosocket (kept
-- alive in a pool) where Nginx lets Lua yield, a blocking read through LuaJIT's FFI elsewhere
-- (init, init_worker, set, log, header and body filters, balancer). Either way the server's
-- process is checked with SO_PEERCRED before the request is sent. Linux only.

local ffi = require "ffi"
local answer = require "kong.vaults.credagent.answer"

local C = ffi.C
local ngx = ngx
local tcp = ngx.socket.tcp
local get_phase = ngx.get_phase
local now = ngx.now
local update_time = ngx.update_time
local subsystem = ngx.config and ngx.config.subsystem or "http"
local fmt = string.format
local find = string.find
local sub = string.sub
local concat = table.concat
local floor = math.floor
local pcall = pcall
local tonumber = tonumber


local _M = {}

-- Renamed with asm labels, so that nothing this declares can clash with another module's
-- declarations of the same libc functions.
local declarations = {
  "struct credagent_sockaddr_un { unsigned short sun_family; char sun_path[108]; };",
  "struct credagent_ucred { int pid; unsigned int uid; unsigned int gid; };",
  "struct credagent_timeval { long tv_sec; long tv_usec; };",
  [[int credagent_socket(int domain, int type, int protocol) __asm__("socket");]],
  [[int credagent_connect(int fd, const struct credagent_sockaddr_un *address, unsigned int length) __asm__("connect");]],
  [[int credagent_setsockopt(int fd, int level, int name, const void *value, unsigned int length) __asm__("setsockopt");]],
  [[int credagent_getsockopt(int fd, int level, int name, void *value, unsigned int *length) __asm__("getsockopt");]],
  [[ssize_t credagent_send(int fd, const void *buffer, size_t length, int flags) __asm__("send");]],
  [[ssize_t credagent_recv(int fd, void *buffer, size_t length, int flags) __asm__("recv");]],
  [[int credagent_close(int fd) __asm__("close");]],
  [[unsigned int credagent_geteuid(void) __asm__("geteuid");]],
  [[char *credagent_strerror(int code) __asm__("strerror");]],
  -- The fd of an HTTP cosocket on OpenResty builds whose lua-resty-core has no sock:getfd():
  -- with a negative fd this returns the socket's fd and changes nothing.
  [[int credagent_http_socket_fd(void *u, int fd, unsigned char *err, size_t *errlen) __asm__("ngx_http_lua_ffi_socket_tcp_hack_fd");]],
}
for _, declaration in ipairs(declarations) do
  -- A second copy of this module (package.loaded cleared) finds them declared already.
  pcall(ffi.cdef, declaration)
end

-- Linux values (x86_64 and arm64).
local AF_UNIX, SOCK_STREAM, SOCK_CLOEXEC = 1, 1, 0x80000
local SOL_SOCKET, SO_PEERCRED, SO_RCVTIMEO, SO_SNDTIMEO = 1, 17, 20, 21
local MSG_NOSIGNAL = 0x4000
local EINTR, EAGAIN = 4, 11

-- Phases where a cosocket may be used (Nginx lets Lua yield there).
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, precontent = true, content = true,
  timer = true, preread = true, ssl_cert = true, ssl_session_fetch = true,
  ssl_client_hello = true, proxy_ssl_cert = true, proxy_ssl_verify = true,
}

-- Kept-alive connections: per worker, per socket path; closed after this long unused (the agent
-- closes idle ones after its socket.idle_timeout, 60 s by default).
local POOL_SIZE = 16
local POOL_IDLE_MS = 30000

-- The largest response head and body this vault reads.
local HEAD_LIMIT = 16384
local BODY_LIMIT = 1048576

local HEAD_END = "\r\n\r\n"


-- The text of an errno value (read with ffi.errno() right after the failed call).
local function errno_text(code)
  return ffi.string(C.credagent_strerror(code))
end


local function own_uid()
  return tonumber(C.credagent_geteuid())
end
_M.own_uid = own_uid


local function unreachable(path, reason)
  return fmt("credagent: no agent answers on %s (%s); is credagent running, and is "
             .. "vault_credagent_socket its socket.path?", path, reason)
end


--- Checks with SO_PEERCRED that the process serving `fd` runs as root, as this process's user or
--- as `server_uid`.
local function check_server(fd, path, server_uid)
  local credentials = ffi.new("struct credagent_ucred")
  local length = ffi.new("unsigned int[1]", ffi.sizeof(credentials))
  if C.credagent_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, credentials, length) ~= 0 then
    return nil, fmt("credagent: cannot learn which user serves %s (SO_PEERCRED: %s)", path, errno_text(ffi.errno()))
  end
  local peer, own = tonumber(credentials.uid), own_uid()
  if answer.peer_allowed(peer, own, server_uid) then
    return true
  end
  return nil, fmt("credagent: refusing the server on %s: its process runs as uid %d, and only root, "
                  .. "Kong's uid %d or vault_credagent_server_uid may serve credentials (set server_uid "
                  .. "to the agent's uid if it runs as another user)", path, peer, own)
end


-- The fd under a connected cosocket, or nil and a reason.
local function cosocket_fd(sock)
  if sock.getfd then
    return sock:getfd()
  end
  local ok, read_fd = pcall(function()
    return C.credagent_http_socket_fd
  end)
  if not ok or subsystem ~= "http" then
    return nil, "this OpenResty offers no way to read a cosocket's fd (sock:getfd() needs lua-resty-core 0.1.32)"
  end
  local errlen = ffi.new("size_t[1]", 128)
  local fd = read_fd(sock[1], -1, ffi.new("unsigned char[128]"), errlen)
  if fd < 0 then
    return nil, "the cosocket has no fd"
  end
  return fd
end


local pool_options = setmetatable({}, { __index = function(options, path)
  local value = { pool = "credagent:" .. path }
  options[path] = value
  return value
end })


-- One exchange on a cosocket: status, headers, body; or nil, an error and whether trying again
-- on a new connection may help (a kept-alive connection failed other than by a timeout).
local function cosocket_exchange(path, request, timeout, server_uid)
  local sock = tcp()
  sock:settimeouts(timeout, timeout, timeout)
  local ok, err = sock:connect("unix:" .. path, pool_options[path])
  if not ok then
    return nil, unreachable(path, err), false
  end
  local reused = sock:getreusedtimes() > 0
  if not reused then
    local fd, fd_err = cosocket_fd(sock)
    if not fd then
      sock:close()
      return nil, fmt("credagent: cannot check which user serves %s: %s", path, fd_err), false
    end
    ok, err = check_server(fd, path, server_uid)
    if not ok then
      sock:close()
      return nil, err, false
    end
  end

  local head, status, headers, length, body
  ok, err = sock:send(request)
  if ok then
    head, err = sock:receiveuntil(HEAD_END)()
  end
  if head then
    status, headers = answer.parse_head(head)
    if not status then
      err = headers
    else
      length, err = answer.content_length(headers)
    end
  end
  if length then
    if length > BODY_LIMIT then
      err = fmt("a %d-byte body", length)
    else
      body, err = sock:receive(length)
    end
  end
  if not body then
    sock:close()
    if err == "timeout" then
      return nil, fmt("credagent: the agent on %s did not answer within %d ms", path, timeout), false
    end
    return nil, fmt("credagent: no answer from the agent on %s (%s)", path, err), reused
  end

  if headers.connection == "close" then
    sock:close()
  else
    sock:setkeepalive(POOL_IDLE_MS, POOL_SIZE)
  end
  return status, headers, body
end


local function clock()
  update_time()
  return now()
end


-- One exchange over a blocking socket: status, headers, body; or nil and an error.
local function blocking_exchange(path, request, timeout, server_uid)
  if #path >= 108 then
    return nil, unreachable(path, "the path is longer than 107 bytes")
  end
  local fd = C.credagent_socket(AF_UNIX, SOCK_STREAM + SOCK_CLOEXEC, 0)
  if fd < 0 then
    return nil, fmt("credagent: cannot open a socket (%s)", errno_text(ffi.errno()))
  end
  local function fail(message)
    C.credagent_close(fd)
    return nil, message
  end

  -- Every blocking call waits at most until the deadline.
  local deadline = clock() + timeout / 1000
  local limit = ffi.new("struct credagent_timeval")
  local function wait_at_most_until_deadline()
    local remaining = deadline - clock()
    -- (A zero timeval would mean no limit at all.)
    if remaining < 0.001 then
      return false
    end
    limit.tv_sec, limit.tv_usec = floor(remaining), floor((remaining % 1) * 1e6)
    C.credagent_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, limit, ffi.sizeof(limit))
    C.credagent_setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, limit, ffi.sizeof(limit))
    return true
  end
  local function timed_out()
    return fail(fmt("credagent: the agent on %s did not answer within %d ms", path, timeout))
  end
  wait_at_most_until_deadline()

  local address = ffi.new("struct credagent_sockaddr_un")
  address.sun_family = AF_UNIX
  ffi.copy(address.sun_path, path)
  local connected, code
  repeat
    connected = C.credagent_connect(fd, address, ffi.sizeof(address))
    code = ffi.errno()
  until connected == 0 or code ~= EINTR
  if connected ~= 0 then
    return fail(unreachable(path, errno_text(code)))
  end
  local ok, err = check_server(fd, path, server_uid)
  if not ok then
    return fail(err)
  end

  local sent = 0
  while sent < #request do
    if not wait_at_most_until_deadline() then
      return timed_out()
    end
    local count = C.credagent_send(fd, ffi.cast("const char *", request) + sent, #request - sent, MSG_NOSIGNAL)
    local code = ffi.errno()
    if count < 0 and code ~= EINTR then
      return fail(fmt("credagent: cannot send to the agent on %s (%s)", path, errno_text(code)))
    end
    sent = sent + (count > 0 and tonumber(count) or 0)
  end

  local chunks, received = {}, ""
  local buffer = ffi.new("char[?]", 65536)
  local head_end, status, headers, total
  while not total or #received < total do
    if not wait_at_most_until_deadline() then
      return timed_out()
    end
    local count = C.credagent_recv(fd, buffer, 65536, 0)
    local code = ffi.errno()
    if count == 0 then
      return fail(fmt("credagent: the agent on %s closed the connection before answering", path))
    elseif count < 0 then
      if code == EAGAIN then
        return timed_out()
      elseif code ~= EINTR then
        return fail(fmt("credagent: no answer from the agent on %s (%s)", path, errno_text(code)))
      end
    else
      chunks[#chunks + 1] = ffi.string(buffer, count)
      received = concat(chunks)
    end
    if not head_end then
      head_end = find(received, HEAD_END, 1, true)
      if head_end then
        status, headers = answer.parse_head(sub(received, 1, head_end - 1))
        if not status then
          return fail(fmt("credagent: no answer from the agent on %s (%s)", path, headers))
        end
        local length, length_err = answer.content_length(headers)
        if not length or length > BODY_LIMIT then
          return fail(fmt("credagent: no answer from the agent on %s (%s)", path, length_err or "an oversized body"))
        end
        total = head_end + 3 + length
      elseif #received > HEAD_LIMIT then
        return fail(fmt("credagent: no answer from the agent on %s (a response head over %d bytes)", path, HEAD_LIMIT))
      end
    end
  end
  C.credagent_close(fd)
  return status, headers, sub(received, head_end + 4, total)
end


--- Sends `request` to the agent listening on `path` and returns the response's status, headers
--- and body, or nil and an error. `timeout` in milliseconds bounds each step (cosocket) or the
--- whole exchange (blocking).
function _M.exchange(path, request, timeout, server_uid)
  if not COSOCKET_PHASES[get_phase()] then
    return blocking_exchange(path, request, timeout, server_uid)
  end
  local status, headers_or_err, body_or_retry = cosocket_exchange(path, request, timeout, server_uid)
  if not status and body_or_retry then
    -- A kept-alive connection the agent had closed meanwhile: once more, on a new one.
    status, headers_or_err, body_or_retry = cosocket_exchange(path, request, timeout, server_uid)
  end
  if not status then
    return nil, headers_or_err
  end
  return status, headers_or_err, body_or_retry
end


return _M
