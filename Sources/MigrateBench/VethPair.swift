/// Two network namespaces joined by a veth pair: the `ip` commands that make
/// them, each end with its /24 address, up, with loopback up in both. Used by
/// the benchmark's real links (`LinkHosts`) and the link-outage tests.
public enum VethPair {
    /// The `ip` arguments, in order; `ip netns del` of both namespaces undoes them.
    public static func commands(namespaces: (source: String, destination: String),
                                devices: (source: String, destination: String),
                                addresses: (source: String, destination: String)) -> [[String]] {
        let (source, destination) = namespaces
        return [
            ["netns", "add", source], ["netns", "add", destination],
            ["link", "add", devices.source, "type", "veth", "peer", "name", devices.destination],
            ["link", "set", devices.source, "netns", source], ["link", "set", devices.destination, "netns", destination],
            ["-n", source, "addr", "add", "\(addresses.source)/24", "dev", devices.source],
            ["-n", destination, "addr", "add", "\(addresses.destination)/24", "dev", devices.destination],
            ["-n", source, "link", "set", devices.source, "up"], ["-n", destination, "link", "set", devices.destination, "up"],
            ["-n", source, "link", "set", "lo", "up"], ["-n", destination, "link", "set", "lo", "up"],
        ]
    }
}
