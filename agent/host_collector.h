// Forwarding header: the host collectors moved to agent/collectors/. Kept so
// the agent's other files (main.cc, batch_builder.h) need not change.
#ifndef SHEAF_AGENT_HOST_COLLECTOR_H_
#define SHEAF_AGENT_HOST_COLLECTOR_H_

#include "agent/collectors/host_collector.h"  // IWYU pragma: export

#endif  // SHEAF_AGENT_HOST_COLLECTOR_H_
