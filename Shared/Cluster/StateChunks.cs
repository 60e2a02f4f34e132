using CondenseCluster.Shared.Cluster.Wire;
using Google.Protobuf;

namespace CondenseCluster.Shared.Cluster;

/// <summary>A replica state cut into the chunks the state service streams, each far below gRPC's 4 MB message limit.</summary>
public static class StateChunks
{
    const int ChunkBytes = 1 << 20;

    public static IEnumerable<StateChunk> Split(byte[] state, long step)
    {
        for (int offset = 0; offset < state.Length; offset += ChunkBytes)
            yield return new StateChunk { Step = step, Data = ByteString.CopyFrom(state, offset, Math.Min(ChunkBytes, state.Length - offset)) };
    }
}
