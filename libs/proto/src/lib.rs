//! Generated code for the Docket contracts in proto/docket, one module per package.

pub mod events {
    pub mod v1 {
        tonic::include_proto!("docket.events.v1");
    }
}

pub mod ticket {
    pub mod v1 {
        tonic::include_proto!("docket.ticket.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("docket.audit.v1");
    }
}

pub mod metrics {
    pub mod v1 {
        tonic::include_proto!("docket.metrics.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Docket contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/docket_descriptor.bin"));
