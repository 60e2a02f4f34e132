using Microsoft.Extensions.Hosting;

namespace CondenseCluster.Shared.Runtime;

/// <summary>
/// The lifetime of a web host embedded in a program (the data plane, the control plane). The default lifetime stops
/// its host on SIGINT or SIGTERM, which would close a worker's ring and its state service, or the coordinator's control
/// API, while a graceful stop still needs them; with this one the program alone decides when its hosts stop
/// (<see cref="StopSignals"/>).
/// </summary>
public sealed class EmbeddedHostLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
