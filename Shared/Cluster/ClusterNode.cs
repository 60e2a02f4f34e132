using System.Reflection;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;

namespace CondenseCluster.Shared.Cluster;

/// <summary>Where a node listens and whom it joins through; overrides of the configuration file.</summary>
public sealed record ClusterEndpoint(string? Host = null, int? Port = null, IReadOnlyList<string>? Seeds = null, string? ConfigFile = null);

/// <summary>Builds a node's Akka configuration (defaults ← --config file ← flags) and starts its actor system.</summary>
public static class ClusterNode
{
    /// <summary>The actor system name: part of every address, e.g. akka.tcp://condense@10.0.0.5:4053.</summary>
    public const string SystemName = "condense";

    /// <summary>The coordinator actor's name, and its path on its node.</summary>
    public const string CoordinatorName = "coordinator";
    public const string CoordinatorPath = "/user/" + CoordinatorName;

    public static Config Configure(string role, ClusterEndpoint endpoint)
    {
        var overrides = new List<string> { $"akka.cluster.roles = [\"{role}\"]" };
        if (endpoint.Host is not null)
        {
            // A DNS name (a Kubernetes pod's stable name) is advertised while the node listens on every interface: binding
            // to the name would fail while its record is not yet published.
            bool name = !System.Net.IPAddress.TryParse(endpoint.Host, out _);
            overrides.Add($"akka.remote.dot-netty.tcp.hostname = \"{(name ? "0.0.0.0" : endpoint.Host)}\"");
            if (name) overrides.Add($"akka.remote.dot-netty.tcp.public-hostname = \"{endpoint.Host}\"");
        }
        if (endpoint.Port is int port)
        {
            if (port is < 0 or > 65535) throw new ArgumentException($"--port {port} is out of range (0 picks a free port)");
            overrides.Add($"akka.remote.dot-netty.tcp.port = {port}");
        }
        if (endpoint.Seeds is { Count: > 0 } seeds)
            overrides.Add($"akka.cluster.seed-nodes = [{string.Join(", ", seeds.Select(s => $"\"{SeedAddress(s)}\""))}]");
        var config = ConfigurationFactory.ParseString(string.Join("\n", overrides));
        if (endpoint.ConfigFile is not null)
        {
            if (!File.Exists(endpoint.ConfigFile)) throw new FileNotFoundException($"--config '{endpoint.ConfigFile}' does not exist");
            try { config = config.WithFallback(ConfigurationFactory.ParseString(File.ReadAllText(endpoint.ConfigFile))); }
            catch (Exception e) when (e is not IOException)
            {
                throw new ArgumentException($"--config '{endpoint.ConfigFile}' is not valid HOCON: {e.Message}");
            }
        }
        return config.WithFallback(Defaults());
    }

    /// <summary>
    /// When a peer's process ends (a worker that crashed or left, the coordinator after a job), the transport logs the
    /// association's failure as a warning and a "Disassociated" error, each with a stack trace: the job reports the
    /// peer's end itself, and <c>log-remote-lifecycle-events = off</c> does not reach these two.
    /// </summary>
    public static readonly LogFilterSetup PeerExitNoise =
        new LogFilterBuilder().ExcludeMessageRegex(new Regex(@"EndpointDisassociatedException|\] Disassociated(\r?\n|$)")).Build(); // matched against the whole line

    public static ActorSystem Start(string role, ClusterEndpoint endpoint)
    {
        var config = Configure(role, endpoint);
        try { return ActorSystem.Create(SystemName, BootstrapSetup.Create().WithConfig(config).And(PeerExitNoise)); }
        catch (Exception e) when (Causes(e).OfType<System.Net.Sockets.SocketException>().Any(s => s.SocketErrorCode == System.Net.Sockets.SocketError.AddressAlreadyInUse))
        {
            var tcp = config.GetConfig("akka.remote.dot-netty.tcp");
            throw new ArgumentException($"{tcp.GetString("hostname")}:{tcp.GetInt("port")} is already in use (another coordinator?); stop it or choose another --port");
        }
    }

    static IEnumerable<Exception> Causes(Exception e)
    {
        for (Exception? cause = e; cause is not null; cause = cause.InnerException) yield return cause;
    }

    /// <summary>Leaves the cluster and stops the node once its job is over (bounded by the shutdown phase timeouts of cluster.conf).</summary>
    public static void Leave(ActorSystem system) => CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance).Wait();

    /// <summary>
    /// Accepts host:port or a full address (akka.tcp://condense@host:port) and returns the full address, so users can
    /// pass what the coordinator prints either way.
    /// </summary>
    public static string SeedAddress(string seed)
    {
        if (seed.StartsWith("akka.tcp://", StringComparison.Ordinal)) return seed.TrimEnd('/');
        int colon = seed.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(seed[(colon + 1)..], out int port) || port is < 1 or > 65535)
            throw new ArgumentException($"seed '{seed}' is neither host:port nor akka.tcp://{SystemName}@host:port");
        return $"akka.tcp://{SystemName}@{seed}";
    }

    static Config Defaults()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("CondenseCluster.Shared.Cluster.cluster.conf")
            ?? throw new InvalidOperationException("the embedded cluster.conf is missing from the build");
        return ConfigurationFactory.ParseString(new StreamReader(stream).ReadToEnd());
    }
}
