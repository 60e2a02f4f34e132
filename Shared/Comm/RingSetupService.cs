using CondenseCluster.Shared.Comm.Wire;
using Grpc.Core;

namespace CondenseCluster.Shared.Comm;

/// <summary>Tells a left neighbour where this worker's ring listener is (ring.proto's RingSetup).</summary>
sealed class RingSetupService(RingListener listener) : RingSetup.RingSetupBase
{
    public override Task<RingAddress> Describe(DescribeRequest request, ServerCallContext context) => Task.FromResult(new RingAddress
    {
        TcpPort = listener.TcpPort, UnixName = listener.UnixName ?? "", HostKey = RingHost.Key,
    });
}
