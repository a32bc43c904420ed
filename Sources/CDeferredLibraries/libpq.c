// The libpq functions credagent calls (`credagent test` for Postgres), loaded on first use (see
// deferred_library.h).
#include "deferred_library.h"

#include "../CLibPQ/shim.h"

static struct deferred_library pq = {"libpq.so.5", "libpq5"};

DEFERRED_FUNCTION(pq, PGconn *, PQconnectdbParams,
                  (const char *const *keywords, const char *const *values, int expand_dbname),
                  (keywords, values, expand_dbname))
DEFERRED_FUNCTION(pq, ConnStatusType, PQstatus, (const PGconn *connection), (connection))
DEFERRED_FUNCTION(pq, char *, PQerrorMessage, (const PGconn *connection), (connection))
DEFERRED_FUNCTION(pq, int, PQsocket, (const PGconn *connection), (connection))
DEFERRED_FUNCTION(pq, int, PQsslInUse, (PGconn *connection), (connection))
DEFERRED_FUNCTION(pq, const char *, PQsslAttribute, (PGconn *connection, const char *name), (connection, name))
DEFERRED_FUNCTION(pq, const char *, PQparameterStatus, (const PGconn *connection, const char *name),
                  (connection, name))
DEFERRED_FUNCTION(pq, PGresult *, PQexec, (PGconn *connection, const char *query), (connection, query))
DEFERRED_FUNCTION(pq, ExecStatusType, PQresultStatus, (const PGresult *result), (result))
DEFERRED_FUNCTION(pq, char *, PQresultErrorMessage, (const PGresult *result), (result))
DEFERRED_FUNCTION(pq, int, PQntuples, (const PGresult *result), (result))
DEFERRED_FUNCTION(pq, int, PQgetisnull, (const PGresult *result, int row, int column), (result, row, column))
DEFERRED_FUNCTION(pq, char *, PQgetvalue, (const PGresult *result, int row, int column), (result, row, column))
DEFERRED_FUNCTION(pq, void, PQclear, (PGresult *result), (result))
DEFERRED_FUNCTION(pq, void, PQfinish, (PGconn *connection), (connection))
