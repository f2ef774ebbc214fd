//! Kafka API names.

/// Names of the Kafka API keys, indexed by key, as in Apache Kafka's `ApiKeys` enum.
const API_NAMES: &[&str] = &[
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "LeaderAndIsr",
    "StopReplica",
    "UpdateMetadata",
    "ControlledShutdown",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "ListGroups",
    "SaslHandshake",
    "ApiVersions",
    "CreateTopics",
    "DeleteTopics",
    "DeleteRecords",
    "InitProducerId",
    "OffsetForLeaderEpoch",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "WriteTxnMarkers",
    "TxnOffsetCommit",
    "DescribeAcls",
    "CreateAcls",
    "DeleteAcls",
    "DescribeConfigs",
    "AlterConfigs",
    "AlterReplicaLogDirs",
    "DescribeLogDirs",
    "SaslAuthenticate",
    "CreatePartitions",
    "CreateDelegationToken",
    "RenewDelegationToken",
    "ExpireDelegationToken",
    "DescribeDelegationToken",
    "DeleteGroups",
    "ElectLeaders",
    "IncrementalAlterConfigs",
    "AlterPartitionReassignments",
    "ListPartitionReassignments",
    "OffsetDelete",
    "DescribeClientQuotas",
    "AlterClientQuotas",
    "DescribeUserScramCredentials",
    "AlterUserScramCredentials",
    "Vote",
    "BeginQuorumEpoch",
    "EndQuorumEpoch",
    "DescribeQuorum",
    "AlterPartition",
    "UpdateFeatures",
    "Envelope",
    "FetchSnapshot",
    "DescribeCluster",
    "DescribeProducers",
    "BrokerRegistration",
    "BrokerHeartbeat",
    "UnregisterBroker",
    "DescribeTransactions",
    "ListTransactions",
    "AllocateProducerIds",
    "ConsumerGroupHeartbeat",
    "ConsumerGroupDescribe",
    "ControllerRegistration",
    "GetTelemetrySubscriptions",
    "PushTelemetry",
    "AssignReplicasToDirs",
    "ListConfigResources",
    "DescribeTopicPartitions",
    "ShareGroupHeartbeat",
    "ShareGroupDescribe",
    "ShareFetch",
    "ShareAcknowledge",
    "AddRaftVoter",
    "RemoveRaftVoter",
    "UpdateRaftVoter",
    "InitializeShareGroupState",
    "ReadShareGroupState",
    "WriteShareGroupState",
    "DeleteShareGroupState",
    "ReadShareGroupStateSummary",
    "StreamsGroupHeartbeat",
    "StreamsGroupDescribe",
    "DescribeShareGroupOffsets",
    "AlterShareGroupOffsets",
    "DeleteShareGroupOffsets",
];

/// The name of a Kafka API key (`3` → `"Metadata"`).
///
/// Upstream rig names only sixteen keys and prints `API-<n>` for the rest; every key Kafka
/// defines is named here, and only keys beyond the table fall back to `API-<n>`.
pub fn api_name(key: i16) -> std::borrow::Cow<'static, str> {
    usize::try_from(key)
        .ok()
        .and_then(|k| API_NAMES.get(k))
        .map(|name| std::borrow::Cow::Borrowed(*name))
        .unwrap_or_else(|| std::borrow::Cow::Owned(format!("API-{key}")))
}

#[cfg(test)]
mod tests {
    use super::api_name;

    #[test]
    fn names_match_upstream_where_upstream_names_them() {
        let upstream = [
            (0, "Produce"),
            (1, "Fetch"),
            (2, "ListOffsets"),
            (3, "Metadata"),
            (8, "OffsetCommit"),
            (9, "OffsetFetch"),
            (10, "FindCoordinator"),
            (11, "JoinGroup"),
            (12, "Heartbeat"),
            (13, "LeaveGroup"),
            (14, "SyncGroup"),
            (18, "ApiVersions"),
            (19, "CreateTopics"),
            (20, "DeleteTopics"),
            (22, "InitProducerId"),
            (36, "SaslAuthenticate"),
        ];
        for (key, name) in upstream {
            assert_eq!(api_name(key), name);
        }
    }

    #[test]
    fn keys_upstream_left_unnamed_are_named_and_the_rest_fall_back() {
        assert_eq!(api_name(15), "DescribeGroups");
        assert_eq!(api_name(17), "SaslHandshake");
        assert_eq!(api_name(32), "DescribeConfigs");
        assert_eq!(api_name(60), "DescribeCluster");
        assert_eq!(api_name(88), "StreamsGroupHeartbeat");
        assert_eq!(api_name(999), "API-999");
        assert_eq!(api_name(-1), "API--1");
    }

    #[test]
    fn every_key_the_protocol_crate_knows_has_its_name() {
        for key in kafka_protocol::messages::ApiKey::iter() {
            assert_eq!(
                api_name(key as i16),
                format!("{key:?}"),
                "key {}",
                key as i16
            );
        }
    }
}
