using Akka.Event;
using CondenseCluster.Shared.Cluster;
using Xunit;

namespace CondenseCluster.Tests.Cluster;

public class ClusterNodeTests
{
    [Fact]
    public void APeersExitIsFilteredFromTheLogAndOtherWarningsAndErrorsAreKept()
    {
        var evaluator = ClusterNode.PeerExitNoise.CreateEvaluator();
        const string writer = "akka://condense/system/endpointManager/reliableEndpointWriter-akka.tcp%3A%2F%2Fcondense%40127.0.0.1%3A4053-1";
        bool Kept(LogEvent e) => evaluator.ShouldTryKeepMessage(e, out _);

        Assert.False(Kept(new Warning(writer, typeof(ClusterNodeTests), "Association with remote system akka.tcp://condense@127.0.0.1:4053 has failed; " +
            "address is now gated for 5000 ms. Reason is: [Akka.Remote.EndpointDisassociatedException: Disassociated]")));
        Assert.False(Kept(new Error(new InvalidOperationException("Disassociated"), writer + "/endpointWriter", typeof(ClusterNodeTests), "Disassociated")));

        Assert.True(Kept(new Warning(writer, typeof(ClusterNodeTests), "Association with remote system akka.tcp://condense@10.0.0.9:4053 has failed; " +
            "address is now gated for 5000 ms. Reason is: [Akka.Remote.Transport.InvalidAssociationException: unreachable]")));
        Assert.True(Kept(new Error(null, writer + "/endpointWriter", typeof(ClusterNodeTests), "Discarding oversized payload sent to akka.tcp://condense@127.0.0.1:4053")));
        Assert.True(Kept(new Warning("CoordinatedShutdown", typeof(ClusterNodeTests), "Coordinated shutdown phase [cluster-exiting] timed out after 00:00:02")));
    }

    [Fact]
    public async Task EveryNodeLogsThroughThePeerExitFilter()
    {
        using var system = ClusterNode.Start("worker", new ClusterEndpoint(Host: "127.0.0.1", Port: 0));
        try
        {
            Assert.False(system.Settings.LogFilter.ShouldTryKeepMessage(
                new Warning("endpointWriter", typeof(ClusterNodeTests), "Reason is: [Akka.Remote.EndpointDisassociatedException: Disassociated]"), out _));
        }
        finally
        {
            await system.Terminate();
        }
    }

    [Fact]
    public void FlagsOverrideTheFileWhichOverridesTheDefaults()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "akka.remote.dot-netty.tcp.port = 5000\nakka.cluster.failure-detector.acceptable-heartbeat-pause = 10s");
            var config = ClusterNode.Configure("worker", new ClusterEndpoint(Port: 6000, Seeds: ["10.0.0.1:4053"], ConfigFile: file));
            Assert.Equal(6000, config.GetInt("akka.remote.dot-netty.tcp.port"));
            Assert.Equal(TimeSpan.FromSeconds(10), config.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause"));
            Assert.Equal(TimeSpan.FromSeconds(1), config.GetTimeSpan("akka.cluster.failure-detector.heartbeat-interval"));
            Assert.Equal(["akka.tcp://condense@10.0.0.1:4053"], config.GetStringList("akka.cluster.seed-nodes"));
            Assert.Equal(["worker"], config.GetStringList("akka.cluster.roles"));
            Assert.Equal("keep-oldest", config.GetString("akka.cluster.split-brain-resolver.active-strategy"));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("10.0.0.7", "10.0.0.7", "")]
    [InlineData("worker-0.cc-worker-headless.training.svc.cluster.local", "0.0.0.0", "worker-0.cc-worker-headless.training.svc.cluster.local")]
    public void AnAddressIsBoundAndANameIsAdvertisedWhileTheNodeListensEverywhere(string host, string bound, string advertised)
    {
        var config = ClusterNode.Configure("worker", new ClusterEndpoint(host));
        Assert.Equal(bound, config.GetString("akka.remote.dot-netty.tcp.hostname"));
        Assert.Equal(advertised, config.GetString("akka.remote.dot-netty.tcp.public-hostname", ""));
    }

    [Theory]
    [InlineData("10.0.0.1", "is neither host:port")]
    [InlineData("host:99999", "is neither host:port")]
    public void ABadSeedIsAClearError(string seed, string message) =>
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => ClusterNode.SeedAddress(seed)).Message);

    [Fact]
    public void AMissingOrBrokenConfigFileIsAClearError()
    {
        Assert.Contains("does not exist", Assert.Throws<FileNotFoundException>(() =>
            ClusterNode.Configure("worker", new ClusterEndpoint(ConfigFile: "/nonexistent.conf"))).Message);
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "akka.cluster.roles = ${undefined.path}");
            Assert.Contains("is not valid HOCON", Assert.Throws<ArgumentException>(() =>
                ClusterNode.Configure("worker", new ClusterEndpoint(ConfigFile: file))).Message);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task ASecondCoordinatorOnTheSamePortIsAClearErrorNotASecondListener()
    {
        var first = ClusterNode.Start("coordinator", new ClusterEndpoint("127.0.0.1", 0));
        try
        {
            int port = Akka.Cluster.Cluster.Get(first).SelfAddress.Port!.Value;
            var error = Assert.Throws<ArgumentException>(() => ClusterNode.Start("coordinator", new ClusterEndpoint("127.0.0.1", port)));
            Assert.Contains($"127.0.0.1:{port} is already in use", error.Message);
        }
        finally
        {
            await first.Terminate();
        }
    }
}
