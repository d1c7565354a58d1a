-- The initial schema. Written in the SQL common to SQLite and PostgreSQL:
-- one file serves both. Every resource is a JSON document (doc) beside the
-- columns the database enforces: keys, references and uniqueness.

CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    network_type TEXT NOT NULL,
    physical_network TEXT NOT NULL,
    -- NULL for types without a segment (local); 0 for flat, so that one
    -- flat network per physical network is enforced too.
    segmentation_id INTEGER,
    doc TEXT NOT NULL,
    CONSTRAINT networks_segment_unique UNIQUE (network_type, physical_network, segmentation_id)
);
CREATE INDEX networks_project ON networks (project_id);

CREATE TABLE subnets (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks (id),
    project_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX subnets_network ON subnets (network_id);

CREATE TABLE ports (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks (id),
    project_id TEXT NOT NULL,
    mac_address TEXT NOT NULL,
    host_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    CONSTRAINT ports_mac_unique UNIQUE (network_id, mac_address)
);
CREATE INDEX ports_host ON ports (host_id);
CREATE INDEX ports_device ON ports (device_id);

-- One row per fixed IP: an address is allocated once per subnet.
CREATE TABLE port_fixed_ips (
    port_id TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    subnet_id TEXT NOT NULL REFERENCES subnets (id),
    ip_address TEXT NOT NULL,
    CONSTRAINT port_fixed_ips_pk PRIMARY KEY (subnet_id, ip_address)
);
CREATE INDEX port_fixed_ips_port ON port_fixed_ips (port_id);

CREATE TABLE routers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE TABLE bgpvpns (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    type TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE TABLE network_associations (
    id TEXT PRIMARY KEY,
    bgpvpn_id TEXT NOT NULL REFERENCES bgpvpns (id),
    network_id TEXT NOT NULL REFERENCES networks (id),
    project_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    CONSTRAINT network_associations_unique UNIQUE (bgpvpn_id, network_id)
);
CREATE INDEX network_associations_network ON network_associations (network_id);

CREATE TABLE router_associations (
    id TEXT PRIMARY KEY,
    bgpvpn_id TEXT NOT NULL REFERENCES bgpvpns (id),
    router_id TEXT NOT NULL REFERENCES routers (id),
    project_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    CONSTRAINT router_associations_unique UNIQUE (bgpvpn_id, router_id)
);
CREATE INDEX router_associations_router ON router_associations (router_id);

CREATE TABLE port_associations (
    id TEXT PRIMARY KEY,
    bgpvpn_id TEXT NOT NULL REFERENCES bgpvpns (id),
    port_id TEXT NOT NULL REFERENCES ports (id),
    project_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    CONSTRAINT port_associations_unique UNIQUE (bgpvpn_id, port_id)
);
CREATE INDEX port_associations_port ON port_associations (port_id);

-- The BGPVPNs a port association's "bgpvpn" routes leak from: a BGPVPN
-- still referenced by a route cannot be deleted.
CREATE TABLE port_association_routes (
    association_id TEXT NOT NULL REFERENCES port_associations (id) ON DELETE CASCADE,
    bgpvpn_id TEXT NOT NULL REFERENCES bgpvpns (id)
);
CREATE INDEX port_association_routes_association ON port_association_routes (association_id);
CREATE INDEX port_association_routes_bgpvpn ON port_association_routes (bgpvpn_id);
