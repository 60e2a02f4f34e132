using System.Collections.Concurrent;
using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;
using Xunit;
using YamlDotNet.RepresentationModel;

namespace CondenseCluster.Tests.Deployment;

/// <summary>
/// The Helm chart (helm/condense-cluster) rendered by the real helm with the default values, the GPU values file and
/// variations, every manifest parsed as YAML: the workers' seed is the coordinator's stable DNS name, the ports in
/// arguments, containers, probes and Services agree, GPUs are asked for only by the GPU values, every container is
/// probed, sized and locked down, the schema refuses bad values, and the job configuration is one the coordinator takes.
/// </summary>
public class HelmChartTests
{
    const string Release = Helm.Release;
    const string Namespace = Helm.Namespace;
    const string ClusterDomain = "cluster.local";

    static string GpuValues => Path.Combine(Helm.Chart, "values-gpu.yaml");

    /// <summary>The value sets the structural tests run on.</summary>
    static string[] Values(string variant) => variant switch
    {
        "default" => [],
        "gpu" => ["-f", GpuValues],
        "train" => ["--set", "coordinator.mode=train", "--set-json", """job.args=["--epochs","2","--batch-size","96"]"""],
        // Every port moved off its default: the agreements below must hold for any numbers, not just the defaults.
        "ports" => ["--set", "ports.akka=5153", "--set", "ports.workerAkka=5154", "--set", "ports.data=6000", "--set", "ports.ring=6001", "--set", "ports.api=5180",
            "--set", "ports.dashboard=5181", "--set", "worker.replicas=4"],
        "dataset" => ["--set", "dataset.hostPath=/mnt/imagenet", "--set-string", "clusterConfig=akka.loglevel = INFO"],
        _ => throw new ArgumentException(variant),
    };

    public static TheoryData<string> Variants => new() { "default", "gpu", "train", "ports", "dataset" };

    [Theory]
    [InlineData("default")]
    [InlineData("gpu")]
    [InlineData("train")]
    public void HelmLintPasses(string variant)
    {
        var (code, stdout, stderr) = Helm.Run(["lint", "--strict", Helm.Chart, "-n", Namespace, .. Values(variant)]);
        Assert.True(code == 0, $"helm lint failed with {variant} values:\n{stdout}\n{stderr}");
        Assert.Contains("0 chart(s) failed", stdout);
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void WorkersSeedTheCoordinatorsStableNameAndEveryPortAgrees(string variant)
    {
        var manifests = Helm.Template(Values(variant));
        var coordinatorSet = manifests.Workload("coordinator");
        var workerSet = manifests.Workload("worker");
        var coordinator = Manifests.Container(coordinatorSet, "coordinator");
        var worker = Manifests.Container(workerSet, "worker");

        // The coordinator's headless Service, as its StatefulSet names it, gives pod 0 the stable name workers seed.
        string coordinatorHeadless = coordinatorSet.Str("spec", "serviceName");
        var headless = manifests.Single("Service", coordinatorHeadless);
        Assert.Equal("None", headless.Str("spec", "clusterIP"));
        Assert.Equal("true", headless.Str("spec", "publishNotReadyAddresses"));
        Assert.Equal(1, coordinatorSet.Int("spec", "replicas"));
        var akkaPort = Assert.Single(headless.Seq("spec", "ports").Cast<YamlMappingNode>(), p => p.Str("name") == "akka");
        int akka = akkaPort.Int("port");
        string coordinatorHost = $"{coordinatorSet.Str("metadata", "name")}-0.{coordinatorHeadless}.{Namespace}.svc.{ClusterDomain}";
        Assert.Equal($"{coordinatorHost}:{akka}", Manifests.Arg(worker, "--seed"));
        Assert.Equal(coordinatorHost, Manifests.Arg(coordinator, "--host"));

        // Coordinator: Akka, API and dashboard ports are the same numbers in its arguments, its container, its Services.
        Assert.Equal(akka, int.Parse(Manifests.Arg(coordinator, "--port")));
        Assert.Equal(akka, manifests.TargetPort(headless, akkaPort));
        Assert.Equal(akka, Manifests.ContainerPort(coordinator, "akka"));
        var control = manifests.Single("Service", coordinatorSet.Str("metadata", "name"));
        var ports = control.Seq("spec", "ports").Cast<YamlMappingNode>().ToDictionary(p => p.Str("name"));
        Assert.Equal(["grpc-api", "http-dashboard"], ports.Keys.Order());
        int api = int.Parse(Manifests.Arg(coordinator, "--api-port"));
        int dashboard = int.Parse(Manifests.Arg(coordinator, "--dashboard-port"));
        Assert.Equal(api, manifests.TargetPort(control, ports["grpc-api"]));
        Assert.Equal(api, ports["grpc-api"].Int("port"));
        Assert.Equal(api, Manifests.ContainerPort(coordinator, "grpc-api"));
        Assert.Equal(dashboard, manifests.TargetPort(control, ports["http-dashboard"]));
        Assert.Equal(dashboard, ports["http-dashboard"].Int("port"));
        Assert.Equal(dashboard, Manifests.ContainerPort(coordinator, "http-dashboard"));
        Assert.Equal("0.0.0.0", Manifests.Arg(coordinator, "--control-host")); // reachable through the Service
        Assert.Equal("0", Manifests.Arg(coordinator, "--local-workers"));
        Assert.Equal(workerSet.Str("spec", "replicas"), Manifests.Arg(coordinator, "--workers"));
        // Probes: gRPC health on the API port for readiness, /healthz on the dashboard port for liveness.
        Assert.Equal(api, Manifests.ResolvePort(coordinator, coordinator.Node("readinessProbe", "grpc", "port")));
        Assert.Equal("/healthz", coordinator.Str("livenessProbe", "httpGet", "path"));
        Assert.Equal(dashboard, Manifests.ResolvePort(coordinator, coordinator.Node("livenessProbe", "httpGet", "port")));

        // Workers: each is reached at its own stable name through the worker headless Service, on the ports it listens on.
        string workerHeadless = workerSet.Str("spec", "serviceName");
        var workerService = manifests.Single("Service", workerHeadless);
        Assert.Equal("None", workerService.Str("spec", "clusterIP"));
        Assert.Equal("true", workerService.Str("spec", "publishNotReadyAddresses"));
        Assert.Equal("Parallel", workerSet.Str("spec", "podManagementPolicy"));
        Assert.Equal($"$(POD_NAME).{workerHeadless}.{Namespace}.svc.{ClusterDomain}", Manifests.Arg(worker, "--host"));
        Assert.Equal("$(POD_NAME)", Manifests.Arg(worker, "--name"));
        var podName = Assert.Single(worker.Seq("env").Cast<YamlMappingNode>(), e => e.Str("name") == "POD_NAME");
        Assert.Equal("metadata.name", podName.Str("valueFrom", "fieldRef", "fieldPath"));
        // The allocator settings apply from the worker's first allocation, as for the workers a coordinator starts itself.
        var tunables = Assert.Single(worker.Seq("env").Cast<YamlMappingNode>(), e => e.Str("name") == "GLIBC_TUNABLES");
        Assert.Equal(NativeAllocator.Tunables, tunables.Str("value"));
        var workerPorts = workerService.Seq("spec", "ports").Cast<YamlMappingNode>().ToDictionary(p => p.Str("name"));
        Assert.Equal(["akka", "data", "ring"], workerPorts.Keys.Order());
        int workerAkka = int.Parse(Manifests.Arg(worker, "--port"));
        int data = int.Parse(Manifests.Arg(worker, "--data-port"));
        int ring = int.Parse(Manifests.Arg(worker, "--ring-port"));
        Assert.Equal(workerAkka, Manifests.ContainerPort(worker, "akka"));
        Assert.Equal(workerAkka, manifests.TargetPort(workerService, workerPorts["akka"]));
        Assert.Equal(data, Manifests.ContainerPort(worker, "data"));
        Assert.Equal(data, manifests.TargetPort(workerService, workerPorts["data"]));
        Assert.Equal(ring, Manifests.ContainerPort(worker, "ring"));
        Assert.Equal(ring, manifests.TargetPort(workerService, workerPorts["ring"]));
        Assert.NotEqual(data, ring);
        Assert.Equal(data, Manifests.ResolvePort(worker, worker.Node("livenessProbe", "tcpSocket", "port")));
        Assert.Equal(workerAkka, Manifests.ResolvePort(worker, worker.Node("readinessProbe", "tcpSocket", "port")));

        if (variant == "default")
        {
            // The chart's defaults are the application's: condense-coordinator --port, --api-port, --dashboard-port.
            Assert.Equal(4053, akka);
            Assert.Equal(4080, api);
            Assert.Equal(4081, dashboard);
        }
        if (variant == "ports") Assert.Equal((5153, 5154, 6000, 6001, 5180, 5181), (akka, workerAkka, data, ring, api, dashboard));
    }

    [Fact]
    public void GpusNodeSelectorsAndTolerationsComeOnlyWithTheGpuValues()
    {
        foreach (var workload in Helm.Template().Workloads())
        {
            var pod = Manifests.PodSpec(workload);
            Assert.Null(pod.Node("nodeSelector"));
            Assert.Null(pod.Node("tolerations"));
            foreach (var container in Manifests.Containers(workload))
            {
                Assert.Null(container.Node("resources", "limits", "nvidia.com/gpu"));
                Assert.Null(container.Node("resources", "requests", "nvidia.com/gpu"));
            }
        }

        var gpu = Helm.Template(Values("gpu"));
        var workerSet = gpu.Workload("worker");
        var worker = Manifests.Container(workerSet, "worker");
        Assert.Equal("1", worker.Str("resources", "limits", "nvidia.com/gpu"));
        Assert.Equal("cuda:0", Manifests.Arg(worker, "--device"));
        Assert.EndsWith(":0.1.0-cuda", worker.Str("image"));
        var workerPod = Manifests.PodSpec(workerSet);
        Assert.Equal("true", workerPod.Str("nodeSelector", "nvidia.com/gpu.present"));
        Assert.Contains(workerPod.Seq("tolerations").Cast<YamlMappingNode>(),
            t => t.Str("key") == "nvidia.com/gpu" && t.Str("effect") == "NoSchedule");
        // The coordinator needs no GPU and may run anywhere.
        var coordinatorSet = gpu.Workload("coordinator");
        Assert.Null(Manifests.Container(coordinatorSet, "coordinator").Node("resources", "limits", "nvidia.com/gpu"));
        Assert.Null(Manifests.PodSpec(coordinatorSet).Node("nodeSelector"));
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void EveryContainerIsProbedSizedAndLockedDown(string variant)
    {
        var manifests = Helm.Template(Values(variant));
        var workloads = manifests.Workloads().ToList();
        Assert.Equal(["coordinator", "worker"], workloads.Select(w => w.Str("metadata", "labels", "app.kubernetes.io/component")).Order());
        foreach (var workload in workloads)
        {
            string where = $"{workload.Str("kind")} {workload.Str("metadata", "name")}";
            var pod = Manifests.PodSpec(workload);
            Assert.True(pod.Str("securityContext", "runAsNonRoot") == "true", $"{where}: pod runAsNonRoot");
            Assert.True(pod.Str("securityContext", "runAsUser") == "10001", $"{where}: pod runAsUser");
            foreach (var container in Manifests.Containers(workload))
            {
                string name = $"{where} container {container.Str("name")}";
                Assert.True(container.Node("readinessProbe") is YamlMappingNode, $"{name}: no readinessProbe");
                Assert.True(container.Node("livenessProbe") is YamlMappingNode, $"{name}: no livenessProbe");
                foreach (var kind in new[] { "requests", "limits" })
                foreach (var resource in new[] { "cpu", "memory" })
                    Assert.True(container.Node("resources", kind, resource) is YamlScalarNode { Value.Length: > 0 }, $"{name}: no {kind}.{resource}");
                Assert.Equal("true", container.Str("securityContext", "runAsNonRoot"));
                Assert.Equal("10001", container.Str("securityContext", "runAsUser"));
                Assert.Equal("false", container.Str("securityContext", "allowPrivilegeEscalation"));
                Assert.Equal(["ALL"], container.Seq("securityContext", "capabilities", "drop").Select(d => ((YamlScalarNode)d).Value));
            }
        }
        // Every resource is in the release's namespace and carries the standard labels.
        foreach (var document in manifests.Documents)
        {
            Assert.Equal(Namespace, document.Str("metadata", "namespace"));
            foreach (var label in new[] { "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                         "app.kubernetes.io/managed-by", "helm.sh/chart" })
                Assert.True(document.Node("metadata", "labels", label) is not null, $"{document.Str("kind")} {document.Str("metadata", "name")} lacks {label}");
        }
    }

    [Theory]
    [InlineData("worker.replicas=-1", "replicas")]
    [InlineData("ports.api=70000", "api")]
    [InlineData("ports.data=0", "data")]
    [InlineData("coordinator.mode=banana", "mode")]
    [InlineData("bogus=1", "bogus")]
    [InlineData("worker.bogus=1", "bogus")]
    [InlineData("worker.gpu.count=-1", "count")]
    [InlineData("service.type=Ingress", "type")]
    [InlineData("job.configuration.Epoch=3", "Epoch")] // a misspelt job key: the coordinator would refuse it at start
    [InlineData("job.configuration.CheckpointEveryMinutes=-1", "CheckpointEveryMinutes")]
    [InlineData("worker.onSigterm=ignore", "onSigterm")]
    [InlineData("coordinator.terminationGracePeriodSeconds=-5", "terminationGracePeriodSeconds")]
    public void TheSchemaRejectsInvalidValues(string setting, string field)
    {
        var (code, stdout, stderr) = Helm.Run(["template", Release, Helm.Chart, "-n", Namespace, "--set", setting]);
        Assert.True(code != 0, $"--set {setting} was accepted:\n{stdout}");
        Assert.Contains("schema", stderr);
        Assert.Contains(field, stderr);
    }

    [Theory]
    [InlineData("dataset.hostPath=/mnt/a,dataset.existingClaim=b", "dataset")]
    [InlineData("worker.replicas=3,job.configuration.BatchSize=2", "BatchSize 2 is smaller than MicroBatches 3")]
    public void ContradictoryValuesFailWithAReason(string settings, string reason)
    {
        var (code, _, stderr) = Helm.Run(["template", Release, Helm.Chart, "-n", Namespace, "--set", settings]);
        Assert.True(code != 0, $"--set {settings} was accepted");
        Assert.Contains(reason, stderr);
    }

    [Fact]
    public void TheGeneratedTokenSecretIsTheCoordinatorsToken()
    {
        var manifests = Helm.Template();
        var secret = Assert.Single(manifests.OfKind("Secret"));
        string token = Encoding.UTF8.GetString(Convert.FromBase64String(secret.Str("data", "token")));
        Assert.Matches("^[A-Za-z0-9]{32}$", token);
        var (name, key) = TokenReference(manifests);
        Assert.Equal(secret.Str("metadata", "name"), name);
        Assert.Equal("token", key);
        // Workers never call the control API: the token stays with the coordinator.
        Assert.DoesNotContain("CONDENSE_CONTROL_TOKEN", Manifests.Container(manifests.Workload("worker"), "worker").ToString());
    }

    [Fact]
    public void AGivenTokenOrAnExistingSecretIsUsed()
    {
        var given = Helm.Template("--set", "controlToken.value=s3cret-token");
        var secret = Assert.Single(given.OfKind("Secret"));
        Assert.Equal("s3cret-token", Encoding.UTF8.GetString(Convert.FromBase64String(secret.Str("data", "token"))));
        Assert.Equal((secret.Str("metadata", "name"), "token"), TokenReference(given));

        var existing = Helm.Template("--set", "controlToken.existingSecret=my-token", "--set", "controlToken.existingSecretKey=api");
        Assert.Empty(existing.OfKind("Secret"));
        Assert.Equal(("my-token", "api"), TokenReference(existing));
    }

    static (string Name, string Key) TokenReference(Manifests manifests)
    {
        var coordinator = Manifests.Container(manifests.Workload("coordinator"), "coordinator");
        var env = Assert.Single(coordinator.Seq("env").Cast<YamlMappingNode>(), e => e.Str("name") == "CONDENSE_CONTROL_TOKEN");
        Assert.Null(env.Node("value"));
        return (env.Str("valueFrom", "secretKeyRef", "name"), env.Str("valueFrom", "secretKeyRef", "key"));
    }

    [Fact]
    public void TheConfigMapsJobJsonIsAJobTheCoordinatorAccepts()
    {
        var manifests = Helm.Template();
        var configMap = Assert.Single(manifests.OfKind("ConfigMap"));
        string json = configMap.Str("data", "job.json");

        // Keys are TrainingOptions' (and the model's CondenseNetConfig's) properties, as the coordinator requires.
        using (var document = JsonDocument.Parse(json))
        {
            var keys = document.RootElement.EnumerateObject().Select(p => p.Name).ToList();
            Assert.Subset(PropertyNames<TrainingOptions>(), keys.ToHashSet());
            Assert.Contains("Model", keys);
            Assert.Subset(PropertyNames<CondenseNetConfig>(), document.RootElement.GetProperty("Model").EnumerateObject().Select(p => p.Name).ToHashSet());
        }
        // Deserialized as StartJob does (unknown members refused) and validated.
        var options = JsonSerializer.Deserialize<TrainingOptions>(json, new JsonSerializerOptions { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow })!;
        options.Validate();
        Assert.Equal("fashion-mnist", options.Dataset);
        Assert.Null(options.DataDir); // no dataset volume: the image's own Fashion-MNIST
        // One micro-batch per worker, and a batch they divide.
        Assert.Equal(manifests.Workload("worker").Int("spec", "replicas"), options.MicroBatches);
        Assert.Equal(0, options.BatchSize % options.MicroBatches);
        Assert.Equal(30, options.CheckpointEveryMinutes); // a preempted job loses at most about half an hour

        // Mounted where `start --config /etc/condense/job.json` (NOTES) finds it.
        var coordinatorSet = manifests.Workload("coordinator");
        Assert.Equal(configMap.Str("metadata", "name"), Manifests.VolumeAt(coordinatorSet, "coordinator", "/etc/condense").Str("configMap", "name"));
    }

    [Fact]
    public void ARunsJobJsonPastedIntoTheValuesReachesTheCoordinatorUnchanged()
    {
        // What a cluster run writes to its output folder (CoordinatorNode), computed properties included.
        var job = new TrainingOptions
        {
            Arch = "condensenet-74-c4", Model = CondenseNetConfig.Preset("condensenet-74-c4", "imagenet"), Dataset = "imagenet",
            DataDir = "/datasets/imagenet", Epochs = 120, BatchSize = 256, MicroBatches = 8, Lasso = 1e-5, CheckpointEverySteps = 500,
        };
        string written = JsonSerializer.Serialize(job, new JsonSerializerOptions { WriteIndented = true });
        string values = Path.Combine(Path.GetTempPath(), $"cc-helm-{Guid.NewGuid():N}.yaml");
        // JSON is YAML: a values file holding the job.json as it is.
        File.WriteAllText(values, $"{{\"job\": {{\"configuration\": {written}}}}}");
        try
        {
            var configMap = Assert.Single(Helm.Template("-f", values).OfKind("ConfigMap"));
            var rendered = JsonSerializer.Deserialize<TrainingOptions>(configMap.Str("data", "job.json"),
                new JsonSerializerOptions { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow })!;
            Assert.Equal(written, JsonSerializer.Serialize(rendered, new JsonSerializerOptions { WriteIndented = true }));
        }
        finally { File.Delete(values); }
    }

    [Fact]
    public void TheSchemaKnowsExactlyTheJobConfigurationsProperties()
    {
        var schema = JsonNode.Parse(File.ReadAllText(Path.Combine(Helm.Chart, "values.schema.json")))!;
        var configuration = schema["properties"]!["job"]!["properties"]!["configuration"]!;
        Assert.Equal(PropertyNames<TrainingOptions>().Order(), configuration["properties"]!.AsObject().Select(p => p.Key).Order());
        Assert.Equal(PropertyNames<CondenseNetConfig>().Order(),
            configuration["properties"]!["Model"]!["properties"]!.AsObject().Select(p => p.Key).Order());
        Assert.False(configuration["additionalProperties"]!.GetValue<bool>());
    }

    static HashSet<string> PropertyNames<T>() =>
        typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance).Select(p => p.Name).ToHashSet();

    [Fact]
    public void ADatasetVolumeIsMountedReadOnlyInWorkersAndCoordinator()
    {
        foreach (var (setting, check) in new (string, Action<YamlMappingNode>)[]
                 {
                     ("dataset.hostPath=/mnt/imagenet", volume => Assert.Equal("/mnt/imagenet", volume.Str("hostPath", "path"))),
                     ("dataset.existingClaim=imagenet", volume => Assert.Equal("imagenet", volume.Str("persistentVolumeClaim", "claimName"))),
                 })
        {
            var manifests = Helm.Template("--set", setting);
            foreach (var component in new[] { "coordinator", "worker" })
            {
                var workload = manifests.Workload(component);
                check(Manifests.VolumeAt(workload, component, "/data"));
                var mount = Assert.Single(Manifests.Container(workload, component).Seq("volumeMounts").Cast<YamlMappingNode>(), m => m.Str("mountPath") == "/data");
                Assert.Equal("true", mount.Str("readOnly"));
            }
            Assert.Equal("/data", Manifests.Arg(Manifests.Container(manifests.Workload("worker"), "worker"), "--data"));
            var options = JsonSerializer.Deserialize<TrainingOptions>(Assert.Single(manifests.OfKind("ConfigMap")).Str("data", "job.json"))!;
            Assert.Equal("/data", options.DataDir);
        }
        // Without one, nothing is mounted at /data and workers use the job's own DataDir.
        var plain = Helm.Template();
        Assert.DoesNotContain("--data", Manifests.Container(plain.Workload("worker"), "worker").Seq("args").Select(a => ((YamlScalarNode)a).Value));
    }

    [Fact]
    public void CheckpointsLiveOnAPersistentVolumeClaim()
    {
        var manifests = Helm.Template();
        var claim = Assert.Single(manifests.OfKind("PersistentVolumeClaim"));
        Assert.Equal("20Gi", claim.Str("spec", "resources", "requests", "storage"));
        Assert.Equal(["ReadWriteOnce"], claim.Seq("spec", "accessModes").Select(m => ((YamlScalarNode)m).Value));
        Assert.Null(claim.Node("spec", "storageClassName")); // the cluster's default StorageClass
        var coordinatorSet = manifests.Workload("coordinator");
        Assert.Equal(claim.Str("metadata", "name"), Manifests.VolumeAt(coordinatorSet, "coordinator", "/checkpoints").Str("persistentVolumeClaim", "claimName"));

        var configured = Assert.Single(Helm.Template("--set", "persistence.size=1Ti", "--set", "persistence.storageClass=fast",
            "--set", "persistence.accessModes={ReadWriteMany}").OfKind("PersistentVolumeClaim"));
        Assert.Equal("1Ti", configured.Str("spec", "resources", "requests", "storage"));
        Assert.Equal("fast", configured.Str("spec", "storageClassName"));
        Assert.Equal(["ReadWriteMany"], configured.Seq("spec", "accessModes").Select(m => ((YamlScalarNode)m).Value));

        var existing = Helm.Template("--set", "persistence.existingClaim=checkpoints");
        Assert.Empty(existing.OfKind("PersistentVolumeClaim"));
        Assert.Equal("checkpoints", Manifests.VolumeAt(existing.Workload("coordinator"), "coordinator", "/checkpoints").Str("persistentVolumeClaim", "claimName"));
    }

    [Fact]
    public void PodDisruptionBudgetsCoverTheWorkersAndTheCoordinator()
    {
        var manifests = Helm.Template();
        var budgets = manifests.OfKind("PodDisruptionBudget").ToList();
        Assert.Equal(2, budgets.Count);
        var byComponent = budgets.ToDictionary(b => Assert.Single(manifests.Workloads(), w => Manifests.Selects(b.Map("spec", "selector", "matchLabels"), w))
            .Str("metadata", "labels", "app.kubernetes.io/component"));
        Assert.Equal("1", byComponent["worker"].Str("spec", "maxUnavailable"));
        Assert.Equal("1", byComponent["coordinator"].Str("spec", "minAvailable"));
        Assert.Null(byComponent["coordinator"].Node("spec", "maxUnavailable"));
    }

    [Fact]
    public void AClusterConfigIsMountedAndGivenToEveryNode()
    {
        var manifests = Helm.Template("--set-string", "clusterConfig=akka.cluster.failure-detector.acceptable-heartbeat-pause = 10s");
        var configMap = Assert.Single(manifests.OfKind("ConfigMap"));
        Assert.Equal("akka.cluster.failure-detector.acceptable-heartbeat-pause = 10s", configMap.Str("data", "cluster.conf").Trim());
        foreach (var component in new[] { "coordinator", "worker" })
        {
            var workload = manifests.Workload(component);
            Assert.Equal("/etc/condense/cluster.conf", Manifests.Arg(Manifests.Container(workload, component), "--config"));
            Assert.Equal(configMap.Str("metadata", "name"), Manifests.VolumeAt(workload, component, "/etc/condense").Str("configMap", "name"));
        }
        // Without one, no node gets --config.
        foreach (var workload in Helm.Template().Workloads())
            Assert.DoesNotContain("--config", Manifests.Containers(workload).SelectMany(c => c.Seq("args")).Select(a => ((YamlScalarNode)a).Value));
    }

    [Fact]
    public void TrainModeRunsTheJobOfTheArgumentsAndMountsNoJobJson()
    {
        var manifests = Helm.Template(Values("train"));
        var args = Manifests.Container(manifests.Workload("coordinator"), "coordinator").Seq("args").Select(a => ((YamlScalarNode)a).Value).ToList();
        Assert.Equal("train", args[0]);
        Assert.Equal(["--epochs", "2", "--batch-size", "96"], args[^4..]);
        Assert.Equal("/checkpoints/run", args[args.IndexOf("--out") + 1]);
        Assert.Empty(manifests.OfKind("ConfigMap")); // job.json is a serve-mode file, and no cluster.conf was given

        Assert.Equal("serve", Manifests.Container(Helm.Template().Workload("coordinator"), "coordinator").Seq("args").Select(a => ((YamlScalarNode)a).Value).First());
    }

    [Fact]
    public void PodsHaveTheGracePeriodOfAGracefulStopAndARestartedCoordinatorResumesItsRun()
    {
        foreach (var variant in new[] { "default", "train" })
        {
            var manifests = Helm.Template(Values(variant));
            var coordinatorSet = manifests.Workload("coordinator");
            var workerSet = manifests.Workload("worker");
            // A step or two, the state fetch and the checkpoint write fit in it (values.yaml says how to size it).
            Assert.Equal(120, coordinatorSet.Int("spec", "template", "spec", "terminationGracePeriodSeconds"));
            Assert.Equal(120, workerSet.Int("spec", "template", "spec", "terminationGracePeriodSeconds"));
            var coordinator = Manifests.Container(coordinatorSet, "coordinator");
            Assert.Equal("/checkpoints/run", Manifests.Arg(coordinator, "--resume-if-present"));
            if (variant == "train") Assert.Equal(Manifests.Arg(coordinator, "--out"), Manifests.Arg(coordinator, "--resume-if-present"));
            Assert.Equal("checkpoint", Manifests.Arg(Manifests.Container(workerSet, "worker"), "--on-sigterm"));
        }

        var configured = Helm.Template("--set", "coordinator.terminationGracePeriodSeconds=300", "--set", "worker.terminationGracePeriodSeconds=290",
            "--set", "worker.onSigterm=leave", "--set", "job.output=/checkpoints/imagenet");
        Assert.Equal(300, configured.Workload("coordinator").Int("spec", "template", "spec", "terminationGracePeriodSeconds"));
        Assert.Equal(290, configured.Workload("worker").Int("spec", "template", "spec", "terminationGracePeriodSeconds"));
        Assert.Equal("/checkpoints/imagenet", Manifests.Arg(Manifests.Container(configured.Workload("coordinator"), "coordinator"), "--resume-if-present"));
        Assert.Equal("leave", Manifests.Arg(Manifests.Container(configured.Workload("worker"), "worker"), "--on-sigterm"));

        // Off, or a train job that names its own --out or --resume: no --resume-if-present.
        foreach (var values in new string[][]
                 {
                     ["--set", "coordinator.resumeOnRestart=false"],
                     ["--set", "coordinator.mode=train", "--set-json", """job.args=["--out","/checkpoints/mine"]"""],
                     ["--set", "coordinator.mode=train", "--set-json", """job.args=["--resume","/checkpoints/old"]"""],
                 })
            Assert.DoesNotContain("--resume-if-present",
                Manifests.Container(Helm.Template(values).Workload("coordinator"), "coordinator").Seq("args").Select(a => ((YamlScalarNode)a).Value));
    }

    [Fact]
    public void TheNotesTellHowToReachTheDashboardTheApiAndStartAJob()
    {
        var (code, stdout, stderr) = Helm.Run(["install", Release, Helm.Chart, "-n", Namespace, "--dry-run=client"]);
        Assert.True(code == 0, stderr);
        string notes = stdout[stdout.IndexOf("NOTES:", StringComparison.Ordinal)..];
        string coordinator = $"{Release}-condense-cluster-coordinator";
        Assert.Contains($"kubectl port-forward -n {Namespace} svc/{coordinator} 4081:4081", notes);
        Assert.Contains("http://127.0.0.1:4081/", notes);
        Assert.Contains($"kubectl port-forward -n {Namespace} svc/{coordinator} 4080:4080", notes);
        Assert.Contains($"kubectl get secret -n {Namespace} {Release}-condense-cluster-control-token -o jsonpath='{{.data.token}}' | base64 -d", notes);
        Assert.Contains("condense-coordinator status --address http://127.0.0.1:4080 --token", notes);
        Assert.Contains($"kubectl exec -n {Namespace} {coordinator}-0 -- /app/condense-coordinator start --config /etc/condense/job.json --out /checkpoints/", notes);
    }
}

/// <summary>The real helm, found on PATH, run on the chart in this repository.</summary>
static class Helm
{
    public const string Release = "cc";
    public const string Namespace = "training";

    static readonly Lazy<string> Executable = new(() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
        .Select(folder => Path.Combine(folder, "helm")).FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException(
            "helm was not found on PATH. The Helm chart tests run the real helm (v3.8 or later, or v4: only `helm lint` and " +
            "`helm template`, no Kubernetes cluster); install it, as .ci/run must before `dotnet test`."));

    static readonly ConcurrentDictionary<string, Manifests> Rendered = new();

    public static string RepositoryRoot { get; } = FindRoot();
    public static string Chart => Path.Combine(RepositoryRoot, "helm", "condense-cluster");

    static string FindRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (File.Exists(Path.Combine(folder.FullName, "CondenseCluster.sln"))) return folder.FullName;
        throw new InvalidOperationException($"no CondenseCluster.sln above {AppContext.BaseDirectory}");
    }

    public static (int Code, string Stdout, string Stderr) Run(IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(Executable.Value) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = RepositoryRoot };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start helm");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            throw new TimeoutException($"helm {string.Join(' ', start.ArgumentList)} ran over 60 s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary><c>helm template cc helm/condense-cluster -n training</c> (Release, Namespace) with these values, parsed (renders are cached).</summary>
    public static Manifests Template(params string[] values) => Rendered.GetOrAdd(string.Join('\0', values), _ =>
    {
        var (code, stdout, stderr) = Run(["template", Release, Chart, "-n", Namespace, .. values]);
        Assert.True(code == 0, $"helm template {string.Join(' ', values)} failed:\n{stderr}");
        return Manifests.Parse(stdout);
    });
}

/// <summary>Rendered manifests, each a YAML mapping, and what the tests look up in them.</summary>
sealed class Manifests(IReadOnlyList<YamlMappingNode> documents)
{
    static readonly string[] WorkloadKinds = ["StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"];

    public IReadOnlyList<YamlMappingNode> Documents => documents;

    public static Manifests Parse(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return new(stream.Documents.Select(d => d.RootNode).OfType<YamlMappingNode>().ToList());
    }

    public IEnumerable<YamlMappingNode> OfKind(string kind) => documents.Where(d => d.Str("kind") == kind);

    public YamlMappingNode Single(string kind, string name) =>
        Assert.Single(OfKind(kind), d => d.Str("metadata", "name") == name);

    public IEnumerable<YamlMappingNode> Workloads() => documents.Where(d => WorkloadKinds.Contains(d.Str("kind")));

    public YamlMappingNode Workload(string component) =>
        Assert.Single(OfKind("StatefulSet"), d => d.Str("metadata", "labels", "app.kubernetes.io/component") == component);

    public static YamlMappingNode PodSpec(YamlMappingNode workload) => workload.Str("kind") switch
    {
        "Pod" => workload.Map("spec"),
        "CronJob" => workload.Map("spec", "jobTemplate", "spec", "template", "spec"),
        _ => workload.Map("spec", "template", "spec"),
    };

    static YamlMappingNode PodLabels(YamlMappingNode workload) =>
        workload.Str("kind") == "Pod" ? workload.Map("metadata", "labels") : workload.Map("spec", "template", "metadata", "labels");

    public static IEnumerable<YamlMappingNode> Containers(YamlMappingNode workload)
    {
        var pod = PodSpec(workload);
        var containers = pod.Seq("containers").Cast<YamlMappingNode>();
        return pod.Node("initContainers") is YamlSequenceNode init ? containers.Concat(init.Cast<YamlMappingNode>()) : containers;
    }

    public static YamlMappingNode Container(YamlMappingNode workload, string name) =>
        Assert.Single(PodSpec(workload).Seq("containers").Cast<YamlMappingNode>(), c => c.Str("name") == name);

    /// <summary>The value after <paramref name="flag"/> in the container's arguments, which hold it once.</summary>
    public static string Arg(YamlMappingNode container, string flag)
    {
        var args = container.Seq("args").Select(a => ((YamlScalarNode)a).Value!).ToList();
        Assert.True(args.Count(a => a == flag) == 1, $"{flag} is not given exactly once in {string.Join(' ', args)}");
        int at = args.IndexOf(flag);
        Assert.True(at + 1 < args.Count, $"{flag} has no value");
        return args[at + 1];
    }

    public static int ContainerPort(YamlMappingNode container, string name) =>
        Assert.Single(container.Seq("ports").Cast<YamlMappingNode>(), p => p.Str("name") == name).Int("containerPort");

    /// <summary>A probe's or Service's port: a number, or the name of one of the container's ports.</summary>
    public static int ResolvePort(YamlMappingNode container, YamlNode? port)
    {
        string value = Assert.IsType<YamlScalarNode>(port).Value!;
        return int.TryParse(value, out int number) ? number : ContainerPort(container, value);
    }

    /// <summary>The container port a Service port reaches in the one workload the Service selects; it must be declared there.</summary>
    public int TargetPort(YamlMappingNode service, YamlMappingNode servicePort)
    {
        var selector = service.Map("spec", "selector");
        var workload = Assert.Single(Workloads(), w => Selects(selector, w));
        var target = servicePort.Node("targetPort") ?? servicePort.Node("port");
        var containers = Containers(workload).Where(c => c.Node("ports") is YamlSequenceNode).ToList();
        foreach (var container in containers)
        {
            var declared = container.Seq("ports").Cast<YamlMappingNode>().ToList();
            string value = ((YamlScalarNode)target!).Value!;
            if (int.TryParse(value, out int number) && declared.Any(p => p.Int("containerPort") == number)) return number;
            if (declared.FirstOrDefault(p => p.Str("name") == value) is { } named) return named.Int("containerPort");
        }
        throw new Xunit.Sdk.XunitException($"{service.Str("metadata", "name")} port {servicePort.Str("name")} reaches no declared container port");
    }

    /// <summary>Whether a label selector picks the workload's pods.</summary>
    public static bool Selects(YamlMappingNode selector, YamlMappingNode workload)
    {
        var labels = PodLabels(workload);
        return selector.Children.All(pair => labels.Node(((YamlScalarNode)pair.Key).Value!) is YamlScalarNode value
                                             && value.Value == ((YamlScalarNode)pair.Value).Value);
    }

    /// <summary>The pod volume that the container mounts at <paramref name="mountPath"/>.</summary>
    public static YamlMappingNode VolumeAt(YamlMappingNode workload, string container, string mountPath)
    {
        var mount = Assert.Single(Container(workload, container).Seq("volumeMounts").Cast<YamlMappingNode>(), m => m.Str("mountPath") == mountPath);
        return Assert.Single(PodSpec(workload).Seq("volumes").Cast<YamlMappingNode>(), v => v.Str("name") == mount.Str("name"));
    }
}

/// <summary>Navigation in YAML nodes by mapping keys.</summary>
static class YamlPaths
{
    /// <summary>The node at the path of keys, or null where a key is missing (or its value is null).</summary>
    public static YamlNode? Node(this YamlNode node, params string[] path)
    {
        YamlNode? current = node;
        foreach (var key in path)
        {
            if (current is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out current)) return null;
        }
        return current is YamlScalarNode { Value: null or "" or "null" or "~", Style: not (YamlDotNet.Core.ScalarStyle.SingleQuoted or YamlDotNet.Core.ScalarStyle.DoubleQuoted) }
            ? null
            : current;
    }

    static T At<T>(YamlNode node, string[] path) where T : YamlNode =>
        node.Node(path) as T ?? throw new Xunit.Sdk.XunitException($"no {typeof(T).Name[4..^4].ToLowerInvariant()} at {string.Join('.', path)}");

    public static YamlMappingNode Map(this YamlNode node, params string[] path) => At<YamlMappingNode>(node, path);
    public static YamlSequenceNode Seq(this YamlNode node, params string[] path) => At<YamlSequenceNode>(node, path);
    public static string Str(this YamlNode node, params string[] path) => At<YamlScalarNode>(node, path).Value!;
    public static int Int(this YamlNode node, params string[] path) => int.Parse(node.Str(path));
}
