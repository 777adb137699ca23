/* registry.c: every protocol komd knows, one table entry each. Adding a protocol is one
 * file and one line here; the core never names a protocol. */
#include <string.h>

#include "proto.h"

extern const struct proto_ops komtext_client_ops, komtext_server_ops;
extern const struct proto_ops modbus_client_ops, modbus_server_ops;
extern const struct proto_ops iec104_client_ops, iec104_server_ops;
extern const struct proto_ops mqtt_client_ops;

const struct proto_ops *const proto_table[] = {
	&komtext_client_ops,
	&komtext_server_ops,
	&modbus_client_ops,
	&modbus_server_ops,
	&iec104_client_ops,
	&iec104_server_ops,
	&mqtt_client_ops,
	NULL,
};

const struct proto_ops *
proto_find(const char *name)
{
	for (int i = 0; proto_table[i]; i++)
		if (strcmp(proto_table[i]->name, name) == 0)
			return proto_table[i];
	return NULL;
}
