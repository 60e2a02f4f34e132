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
    public async Task EveryNodeLogsThroughThePeerExitFilterAndTheNodeLogger()
    {
        using var system = ClusterNode.Start("worker", new ClusterEndpoint(Host: "127.0.0.1", Port: 0));
        try
        {
            Assert.False(system.Settings.LogFilter.ShouldTryKeepMessage(
                new Warning("endpointWriter", typeof(ClusterNodeTests), "Reason is: [Akka.Remote.EndpointDisassociatedException: Disassociated]"), out _));
            Assert.Equal([typeof(NodeLogger)], system.Settings.Loggers.Select(name => Type.GetType(name)));
        }
        finally
        {
            await system.Terminate();
        }
    }

    /// <summary>The warnings that follow a worker's loss, as Akka 1.5.73 words them (seen after a kill -9 of a worker).</summary>
    [Fact]
    public void APeersLossIsOnePlainLineEach()
    {
        string Line(string message) => Assert.IsType<string>(NodeLogger.PeerLine(new Warning("akka", typeof(ClusterNodeTests), message)));

        Assert.Equal("akka: 127.0.0.1:35599 (worker) unreachable from 127.0.0.1:36727 (coordinator)", Line(
            "Cluster Node [akka.tcp://condense@127.0.0.1:36727] - Marking node(s) as UNREACHABLE [Member(address = akka.tcp://condense@127.0.0.1:35599, " +
            "Uid=2020283049 status = Down, role=[worker], upNumber=3, version=1.0.0)]. Node roles [coordinator]"));
        Assert.Equal("akka: 127.0.0.1:35599 (worker), 127.0.0.1:41021 (worker) unreachable from 127.0.0.1:37327 (worker)", Line(
            "Cluster Node [akka.tcp://condense@127.0.0.1:37327] - Marking node(s) as UNREACHABLE [Member(address = akka.tcp://condense@127.0.0.1:35599, " +
            "Uid=1 status = Up, role=[worker], upNumber=3, version=1.0.0), Member(address = akka.tcp://condense@127.0.0.1:41021, Uid=2 status = Up, " +
            "role=[worker], upNumber=4, version=1.0.0)]. Node roles [worker]"));
        Assert.Equal("akka: cannot connect to 127.0.0.1:35599 (Connection refused tcp://condense@127.0.0.1:35599); messages to it are dropped for 5000 ms", Line(
            "Tried to associate with unreachable remote address [akka.tcp://condense@127.0.0.1:35599]. Address is now gated for 5000 ms, all messages to " +
            "this address will be delivered to dead letters. Reason: [Connection refused tcp://condense@127.0.0.1:35599] "));

        // With a cause, Akka puts the exception's ToString (stack trace included) into the message itself.
        var cause = Thrown(new AggregateException(Thrown(new System.Net.Sockets.SocketException(11001))));
        Assert.Equal($"akka: cannot connect to worker-0.cc:4053 (System.AggregateException: One or more errors occurred. ({cause.InnerException!.Message})); " +
            "messages to it are dropped for 5000 ms", Line(
            "Tried to associate with unreachable remote address [akka.tcp://condense@worker-0.cc:4053]. Address is now gated for 5000 ms, all messages to " +
            $"this address will be delivered to dead letters. Reason: [Association failed with akka.tcp://condense@worker-0.cc:4053] Caused by: [{cause}]"));
        var refused = Thrown(new InvalidOperationException("Association failed with akka.tcp://condense@10.0.0.9:4053"));
        Assert.Contains("   at ", refused.ToString());
        Assert.Equal("akka: the connection to 10.0.0.9:4053 failed (System.InvalidOperationException: Association failed with akka.tcp://condense@10.0.0.9:4053); " +
            "messages to it are dropped for 5000 ms", Line(
            $"Association with remote system akka.tcp://condense@10.0.0.9:4053 has failed; address is now gated for 5000 ms. Reason is: [{refused}]"));
        Assert.Equal("akka: 127.0.0.1:35599 is quarantined; that process must restart to join again", Line(
            "Association to [akka.tcp://condense@127.0.0.1:35599] having UID [916097400] is irrecoverably failed. UID is now quarantined and all messages " +
            "to this UID will be delivered to dead letters. Remote actorsystem must be restarted to recover from this situation."));
    }

    [Fact]
    public void EveryOtherEventIsLeftToAkkasOwnFormat()
    {
        const string unreachable = "Cluster Node [akka.tcp://condense@127.0.0.1:36727] - Marking node(s) as UNREACHABLE [Member(address = " +
            "akka.tcp://condense@127.0.0.1:35599, Uid=1 status = Up, role=[worker], upNumber=3, version=1.0.0)]. Node roles [coordinator]";
        Assert.Null(NodeLogger.PeerLine(new Error(Thrown(new InvalidOperationException("boom")), "akka", typeof(ClusterNodeTests), unreachable)));
        Assert.Null(NodeLogger.PeerLine(new Info("akka", typeof(ClusterNodeTests), unreachable)));
        Assert.Null(NodeLogger.PeerLine(new Warning("CoordinatedShutdown", typeof(ClusterNodeTests), "Coordinated shutdown phase [cluster-exiting] timed out after 00:00:02")));
        Assert.Null(NodeLogger.PeerLine(new Warning("akka", typeof(ClusterNodeTests), "Cluster Node [akka.tcp://condense@127.0.0.1:36727] - Scheduled sending of " +
            "heartbeat was delayed. Previous heartbeat was sent [4012] ms ago, expected interval is [1000] ms.")));
    }

    /// <summary><paramref name="e"/> after a throw, so that it carries a stack trace as Akka's would.</summary>
    static T Thrown<T>(T e) where T : Exception
    {
        try { throw e; }
        catch (T caught) { return caught; }
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
