using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;

namespace CondenseCluster.Coordinator.Job;

/// <summary>
/// How a job's cluster is formed and kept in step: where the coordinator listens, which workers it starts here, how
/// many it waits for, how often replicas prove they agree, the gradient bucket size of the ring, whether gradients
/// the masks zero are left out of it, the precision gradients cross it in, and whether the ring may be hierarchical.
/// </summary>
public sealed record ClusterSettings(ClusterEndpoint Endpoint, int LocalWorkers, int ExpectedWorkers, int WorkerThreads, string WorkerDevice,
    int ChecksumEvery, long BucketFloats, bool SendMaskedGradients = false, WirePrecision GradientPrecision = WirePrecision.Float32,
    RingTopology Topology = RingTopology.Auto);
