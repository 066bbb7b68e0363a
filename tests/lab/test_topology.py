"""load_topology on small topology files: what containerlab would make of them, and every
error as snippet -> exact message."""

from __future__ import annotations

import shlex
import textwrap
from ipaddress import ip_network
from pathlib import Path, PurePosixPath

import pytest

from announcer.lab.clabfile import expand_env
from announcer.lab.topology import (
    Bind,
    Endpoint,
    Link,
    Topology,
    TopologyError,
    load_topology,
    split_command,
)


def write(directory: Path, text: str) -> Path:
    path = directory / "lab.clab.yml"
    path.write_text(textwrap.dedent(text))
    return path


def load(directory: Path, text: str, environ: dict[str, str] | None = None) -> Topology:
    return load_topology(write(directory, text), environ=environ or {})


def load_error(directory: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(TopologyError) as caught:
        load(directory, text, environ)
    return str(caught.value)


# ---- inheritance ----------------------------------------------------------------------------

INHERITANCE = """
    name: inherit
    topology:
      defaults:
        kind: linux
        image: defaults-image
        labels: {a: defaults, b: defaults, c: defaults, d: defaults}
        env: {A: defaults, B: defaults}
        exec: ["echo defaults"]
        binds: ["d1:/x", "d2:/only-defaults"]
      kinds:
        linux:
          image: kind-image
          cmd: kind-cmd
          labels: {b: kind, c: kind, d: kind}
          env: {B: kind}
          exec: ["echo kind"]
          binds: ["k1:/x", "k2:/y"]
      groups:
        g:
          cmd: group-cmd
          labels: {c: group, d: group}
          exec: ["echo group"]
          binds: ["g1:/y"]
      nodes:
        n:
          group: g
          labels: {d: node}
          exec: ["echo node"]
          binds: ["n1:/z"]
        plain:
"""


def test_scalars_come_from_the_most_specific_level(tmp_path: Path) -> None:
    lab = load(tmp_path, INHERITANCE)
    n, plain = lab.nodes["n"], lab.nodes["plain"]
    assert (n.kind, n.image, n.group, n.cmd) == ("linux", "kind-image", "g", ("group-cmd",))
    assert (plain.image, plain.group, plain.cmd) == ("kind-image", None, ("kind-cmd",))


def test_labels_and_env_merge_with_the_more_specific_level_winning(tmp_path: Path) -> None:
    n = load(tmp_path, INHERITANCE).nodes["n"]
    assert dict(n.labels) == {"a": "defaults", "b": "kind", "c": "group", "d": "node"}
    assert dict(n.env) == {"A": "defaults", "B": "kind"}


def test_exec_lists_concatenate_defaults_first(tmp_path: Path) -> None:
    lab = load(tmp_path, INHERITANCE)
    levels = ("defaults", "kind", "group", "node")
    assert lab.nodes["n"].exec == tuple(("echo", level) for level in levels)
    assert lab.nodes["plain"].exec == (("echo", "defaults"), ("echo", "kind"))


def test_binds_merge_by_destination_with_the_more_specific_level_winning(tmp_path: Path) -> None:
    n = load(tmp_path, INHERITANCE).nodes["n"]
    assert [(b.source.name, str(b.destination)) for b in n.binds] == [
        ("k1", "/x"),
        ("d2", "/only-defaults"),
        ("g1", "/y"),
        ("n1", "/z"),
    ]


def test_kind_comes_from_the_group_and_group_from_the_kind(tmp_path: Path) -> None:
    lab = load(
        tmp_path,
        """
        name: t
        topology:
          kinds:
            linux: {group: from-kind}
          groups:
            g: {kind: linux, image: group-image}
            from-kind: {labels: {via: kind}}
          nodes:
            grouped: {group: g}
            kinded: {kind: linux}
        """,
    )
    assert (lab.nodes["grouped"].kind, lab.nodes["grouped"].image) == ("linux", "group-image")
    assert lab.nodes["kinded"].group == "from-kind"
    assert dict(lab.nodes["kinded"].labels) == {"via": "kind"}


def test_a_group_not_defined_in_groups_contributes_nothing(tmp_path: Path) -> None:
    lab = load(tmp_path, "name: t\ntopology: {nodes: {n: {kind: linux, group: spine}}}\n")
    assert (lab.nodes["n"].group, dict(lab.nodes["n"].labels)) == ("spine", {})


def test_yaml_merge_keys_work_and_scalars_stay_text(tmp_path: Path) -> None:
    lab = load(
        tmp_path,
        """
        name: t
        topology:
          defaults: &base {kind: linux, env: {FLAG: yes, MODE: 0755, EMPTY: }}
          nodes:
            n:
              <<: *base
              labels: {announcer.lab/role: router}
        """,
    )
    assert dict(lab.nodes["n"].env) == {"FLAG": "yes", "MODE": "0755", "EMPTY": ""}


# ---- naming, lab dir, binds -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix_line", "netns"),
    [
        ("", "clab-lab-n1"),
        ("prefix: clab\n", "clab-lab-n1"),
        ("prefix: custom\n", "custom-lab-n1"),
        ('prefix: ""\n', "n1"),
        ("prefix: __lab-name\n", "lab-n1"),
    ],
)
def test_prefix_names_the_namespaces_but_not_the_lab_dir(
    tmp_path: Path, prefix_line: str, netns: str
) -> None:
    lab = load(tmp_path, f"name: lab\n{prefix_line}topology: {{nodes: {{n1: {{kind: linux}}}}}}\n")
    assert lab.netns("n1") == lab.nodes["n1"].netns == netns
    assert lab.lab_dir == tmp_path / "clab-lab"
    assert lab.node_dir("n1") == tmp_path / "clab-lab" / "n1"


def test_netns_of_an_unknown_node_is_a_key_error(tmp_path: Path) -> None:
    lab = load(tmp_path, "name: lab\ntopology: {nodes: {n1: {kind: linux}}}\n")
    with pytest.raises(KeyError):
        lab.netns("n2")


MAGIC = """
    name: magic
    topology:
      nodes:
        n1:
          kind: linux
          binds:
            - __clabNodeDir__/run:/run/x
            - __clabDir__/pki/ca.crt:/etc/ca.crt:ro
            - __clabNodeName__/conf:/etc/conf:ro,Z
            - /abs/path:/abs
            - ../shared/./dir:/shared:rw
            - ~/data:/data
          exec: ["cat __clabNodeDir__/f __clabNodeName__ __clabDir__"]
          cmd: echo __clabNodeName__
"""


def test_bind_sources_get_magic_variables_and_resolve_against_the_topology_dir(
    tmp_path: Path,
) -> None:
    lab = load(tmp_path, MAGIC, {"HOME": "/home/lab"})
    labdir = tmp_path / "clab-magic"
    assert lab.nodes["n1"].binds == (
        Bind(labdir / "n1" / "run", PurePosixPath("/run/x"), read_only=False),
        Bind(labdir / "pki" / "ca.crt", PurePosixPath("/etc/ca.crt"), read_only=True),
        Bind(tmp_path / "n1" / "conf", PurePosixPath("/etc/conf"), read_only=True),
        Bind(Path("/abs/path"), PurePosixPath("/abs"), read_only=False),
        Bind(tmp_path.parent / "shared" / "dir", PurePosixPath("/shared"), read_only=False),
        Bind(Path("/home/lab/data"), PurePosixPath("/data"), read_only=False),
    )


def test_magic_variables_are_replaced_in_exec_but_not_in_cmd(tmp_path: Path) -> None:
    node = load(tmp_path, MAGIC, {"HOME": "/home/lab"}).nodes["n1"]
    labdir = str(tmp_path / "clab-magic")
    assert node.exec == (("cat", f"{labdir}/n1/f", "n1", labdir),)
    assert node.cmd == ("echo", "__clabNodeName__")


def test_clab_labdir_base_moves_the_lab_dir(tmp_path: Path) -> None:
    base = tmp_path / "labs"
    lab = load(tmp_path, MAGIC, {"HOME": "/h", "CLAB_LABDIR_BASE": str(base)})
    assert lab.lab_dir == base / "clab-magic"
    assert lab.nodes["n1"].binds[0].source == base / "clab-magic" / "n1" / "run"


def test_bind_source_finds_the_host_path_behind_a_node_path(tmp_path: Path) -> None:
    lab = load(
        tmp_path,
        """
        name: t
        topology:
          nodes:
            n: {kind: linux, binds: ["/srv/run:/run", "/srv/ann:/run/announcer:ro"]}
        """,
    )
    assert lab.bind_source("n", "/run/announcer/lab.sock") == Path("/srv/ann/lab.sock")
    assert lab.bind_source("n", PurePosixPath("/run/announcer")) == Path("/srv/ann")
    assert lab.bind_source("n", "/run/other/x") == Path("/srv/run/other/x")
    assert lab.bind_source("n", "/runner") is None
    assert lab.bind_source("n", "/etc") is None


def test_roles_vips_and_links(tmp_path: Path) -> None:
    lab = load(
        tmp_path,
        """
        name: t
        topology:
          defaults: {kind: linux}
          groups:
            cp:
              labels:
                announcer.lab/role: control-plane
                announcer.lab/vips: "192.0.2.1/32, 2001:db8::1/128"
          nodes:
            r1: {labels: {announcer.lab/role: router}}
            cp1: {group: cp}
            cp2: {group: cp, labels: {announcer.lab/vips: "192.0.2.1/32,192.0.2.2/32"}}
            other:
          links:
            - endpoints: ["r1:eth1", "cp1:eth1"]
            - endpoints: [r1:eth2, cp2:eth1]
              labels: {ignored: "yes"}
        """,
    )
    assert [lab.role(name) for name in lab.nodes] == [
        "router",
        "control-plane",
        "control-plane",
        None,
    ]
    assert lab.vips() == tuple(
        ip_network(vip) for vip in ("192.0.2.1/32", "2001:db8::1/128", "192.0.2.2/32")
    )
    assert lab.links == (
        Link(Endpoint("r1", "eth1"), Endpoint("cp1", "eth1")),
        Link(Endpoint("r1", "eth2"), Endpoint("cp2", "eth1")),
    )


def test_ignored_keys_load(tmp_path: Path) -> None:
    lab = load(
        tmp_path,
        """
        name: t
        debug: true
        topology:
          nodes:
            n: {kind: linux, position: "1,2", image-pull-policy: never, cap-add: [NET_ADMIN]}
        """,
    )
    assert list(lab.nodes) == ["n"]


def test_the_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "name: t\ntopology: {nodes: {n: {kind: linux, binds: [x:/x]}}}\n")
    monkeypatch.chdir(tmp_path)
    lab = load_topology(Path("lab.clab.yml"), environ={})
    assert (lab.path, lab.nodes["n"].binds[0].source) == (tmp_path / "lab.clab.yml", tmp_path / "x")


# ---- ${VAR} ---------------------------------------------------------------------------------

ENVIRON = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("${SET} $SET", "value value"),
        ("${UNSET} $UNSET", "${UNSET} $UNSET"),
        ("${UNSET:=fallback} ${UNSET:-fallback}", "fallback fallback"),
        ("${EMPTY:=fallback} ${EMPTY=fallback}.", "fallback ."),
        ("${UNSET=fall back} ${SET:=fallback}", "fall back value"),
        ("${UNSET:=$SET}", "value"),
        ("${SET+other} ${UNSET+other}.", "other ."),
        ("$$SET $${SET} $$$SET", "$SET ${SET} $value"),
        ("$1 ${1} $_ price: 5$", "$1 ${1} $_ price: 5$"),
    ],
)
def test_env_expansion(text: str, expanded: str) -> None:
    assert expand_env(text, ENVIRON) == expanded


def test_env_expansion_happens_before_parsing(tmp_path: Path) -> None:
    lab = load(
        tmp_path,
        """
        name: ${LAB:=fromdefault}
        topology:
          nodes:
            n: {kind: linux, image: "${IMAGE:=alpine:3}", cmd: "sleep ${SLEEP}"}
        """,
        {"SLEEP": "infinity"},
    )
    assert (lab.name, lab.nodes["n"].image, lab.nodes["n"].cmd) == (
        "fromdefault",
        "alpine:3",
        ("sleep", "infinity"),
    )


def test_environ_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANNOUNCER_TEST_LAB", "fromenv")
    path = write(tmp_path, "name: $ANNOUNCER_TEST_LAB\ntopology: {}\n")
    assert load_topology(path).name == "fromenv"


# ---- splitting commands ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("ip addr add 192.0.2.2/30 dev eth1", ("ip", "addr", "add", "192.0.2.2/30", "dev", "eth1")),
        ("sh -c 'ip -j addr; echo \"$X\" > f'", ("sh", "-c", 'ip -j addr; echo "$X" > f')),
        ('echo "a b" c\\ d \'\' ""', ("echo", "a b", "c d", "", "")),
        ("  spaced\tout\n", ("spaced", "out")),
        ("echo a#b # the rest is a comment", ("echo", "a#b")),
        ("echo one # comment\necho two", ("echo", "one", "echo", "two")),
        ('echo "back\\slash \\"q\\""', ("echo", 'backslash "q"')),
        ("", ()),
    ],
)
def test_commands_split_like_containerlab(command: str, argv: tuple[str, ...]) -> None:
    assert split_command(command) == argv


def test_python_shlex_would_split_differently() -> None:
    # Why split_command exists: containerlab uses github.com/google/shlex, not POSIX rules.
    assert shlex.split("echo a#b # c", comments=True) == ["echo", "a"]
    assert shlex.split('echo "back\\slash"') == ["echo", "back\\slash"]
    assert split_command('echo a#b "back\\slash" # c') == ("echo", "a#b", "backslash")


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("echo 'open", "no closing quote"),
        ('echo "open', "no closing quote"),
        ("echo trailing\\", "nothing after the final backslash"),
        ('echo "trailing\\', "nothing after the final backslash"),
    ],
)
def test_unsplittable_commands_raise(command: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{reason}$"):
        split_command(command)


# ---- errors ---------------------------------------------------------------------------------

NODE = "name: t\ntopology:\n  nodes:\n    n:\n      kind: linux\n"
TWO = "name: t\ntopology:\n  defaults: {kind: linux}\n  nodes: {a: , b: }\n  links:\n"
IFNAME = "is not a Linux interface name (1-15 bytes, no '/', ':' or whitespace, not '.' or '..')"

ERRORS = [
    ("name: t\nbogus: 1\ntopology: {}\n", "bogus: unknown key"),
    ("name: t\nmgmt: {network: m}\ntopology: {}\n", "mgmt: not supported by the lab realiser"),
    ("name: t\nsettings: {}\ntopology: {}\n", "settings: not supported by the lab realiser"),
    ("topology: {}\n", "name: required"),
    (
        "name: a b\ntopology: {}\n",
        "name: 'a b' is not a valid lab name (letters, digits, '.', '_' and '-', starting with"
        " a letter or digit)",
    ),
    ("name: [t]\ntopology: {}\n", "name: expected a string, got a list"),
    ("name: t\nprefix: -x\ntopology: {}\n", "prefix: '-x' is not empty, '__lab-name' or a name"),
    ("name: t\n", "topology: required"),
    ("- name\n", "(top level): expected a mapping, got a list"),
    ("name: t\ntopology: {bogus: 1}\n", "topology.bogus: unknown key"),
    ("name: t\ntopology: {nodes: [n]}\n", "topology.nodes: expected a mapping, got a list"),
    (
        "name: t\ntopology: {nodes: {n/1: {kind: linux}}}\n",
        "topology.nodes['n/1']: 'n/1' is not a valid node name (letters, digits, '.', '_' and"
        " '-', starting with a letter or digit)",
    ),
    (NODE + "      bogus: 1\n", "topology.nodes.n.bogus: unknown key"),
    *(
        (NODE + f"      {key}: x\n", f"topology.nodes.n.{key}: not supported by the lab realiser")
        for key in ("startup-config", "ports", "mgmt-ipv4", "entrypoint", "network-mode")
    ),
    (
        "name: t\ntopology: {kinds: {linux: {sysctls: {a: 1}}}}\n",
        "topology.kinds.linux.sysctls: not supported by the lab realiser",
    ),
    (
        "name: t\ntopology: {nodes: {n: {image: x}}}\n",
        "topology.nodes.n: no kind set on the node, its group or the defaults",
    ),
    (
        "name: t\ntopology: {nodes: {n: {kind: nokia_srlinux}}}\n",
        "topology.nodes.n: kind 'nokia_srlinux' is not supported by the lab realiser (only"
        " 'linux')",
    ),
    (NODE + "      image: [x]\n", "topology.nodes.n.image: expected a string, got a list"),
    (NODE + "      env: [A]\n", "topology.nodes.n.env: expected a mapping, got a list"),
    (NODE + "      env: {A: [1]}\n", "topology.nodes.n.env.A: expected a string, got a list"),
    (
        "name: t\ntopology: {defaults: {env: {__IMPORT_ENVS: true}}}\n",
        "topology.defaults.env.__IMPORT_ENVS: importing the host environment is not supported"
        " by the lab realiser",
    ),
    (
        NODE + "      exec: echo hi\n",
        "topology.nodes.n.exec: expected a list of strings, got 'echo hi'",
    ),
    (NODE + "      exec: [{a: b}]\n", "topology.nodes.n.exec[0]: expected a string, got a mapping"),
    (
        NODE + '      exec: ["echo \'hi"]\n',
        'topology.nodes.n.exec[0]: cannot split "echo \'hi": no closing quote',
    ),
    (NODE + "      exec: ['  ']\n", "topology.nodes.n.exec[0]: '  ' is an empty command"),
    (
        "name: t\ntopology: {groups: {g: {cmd: 'x \"'}}, nodes: {n: {kind: linux, group: g}}}\n",
        "topology.groups.g.cmd: cannot split 'x \"': no closing quote",
    ),
    (
        NODE + "      binds: [/data]\n",
        "topology.nodes.n.binds[0]: '/data' is an anonymous volume, not supported by the lab"
        " realiser",
    ),
    (
        NODE + "      binds: ['a:/b:ro:x']\n",
        "topology.nodes.n.binds[0]: 'a:/b:ro:x' is not of the form source:destination[:options]",
    ),
    (
        NODE + "      binds: [':/b']\n",
        "topology.nodes.n.binds[0]: ':/b' is not of the form source:destination[:options]",
    ),
    (
        NODE + "      binds: ['a:b']\n",
        "topology.nodes.n.binds[0]: 'a:b': the destination must be an absolute path",
    ),
    (
        NODE + "      binds: ['a:/b:rx']\n",
        "topology.nodes.n.binds[0]: 'a:/b:rx' has the unknown option 'rx'",
    ),
    (
        NODE + "      binds: ['a:/b:ro,rw']\n",
        "topology.nodes.n.binds[0]: 'a:/b:ro,rw' is both read-only and read-write",
    ),
    (
        NODE + "      binds: ['~/x:/x']\n",
        "topology.nodes.n.binds[0]: cannot expand '~' in '~/x' without HOME",
    ),
    (
        NODE + "      binds: ['~lab/x:/x']\n",
        "topology.nodes.n.binds[0]: '~lab/x': only '~' and '~/' can be expanded",
    ),
    (
        NODE + "      labels: {announcer.lab/role: server}\n",
        "topology.nodes.n.labels['announcer.lab/role']: 'server' is not one of router,"
        " control-plane, client",
    ),
    (
        "name: t\ntopology: {groups: {g: {labels: {announcer.lab/vips: '10.0.0.1/24'}}}}\n",
        "topology.groups.g.labels['announcer.lab/vips']: '10.0.0.1/24' is not an IP prefix",
    ),
    (TWO + "    bogus\n", "topology.links: expected a list, got 'bogus'"),
    (TWO + "    - [a:eth1, b:eth1]\n", "topology.links[0]: expected a mapping, got a list"),
    (
        TWO + "    - endpoints: [a:eth1]\n",
        "topology.links[0].endpoints: expected exactly 2 endpoints, got 1",
    ),
    (
        TWO + "    - endpoints: [a:eth1, b:eth1, b:eth2]\n",
        "topology.links[0].endpoints: expected exactly 2 endpoints, got 3",
    ),
    (
        TWO + "    - labels: {}\n",
        "topology.links[0].endpoints: expected exactly 2 endpoints, got 0",
    ),
    (
        TWO + "    - {endpoints: [a:eth1, b:eth1], bogus: 1}\n",
        "topology.links[0].bogus: unknown key",
    ),
    (
        TWO + "    - {endpoints: [a:eth1, b:eth1], mtu: 1500}\n",
        "topology.links[0].mtu: not supported by the lab realiser",
    ),
    (
        TWO + "    - {type: veth, endpoints: [{node: a, interface: eth1}]}\n",
        "topology.links[0].type: 'veth' links are not supported by the lab realiser (only brief"
        ' links: endpoints: ["a:eth1", "b:eth1"])',
    ),
    (
        TWO + "    - endpoints: [a:eth1, b]\n",
        "topology.links[0].endpoints[1]: 'b' is not of the form node:interface",
    ),
    *(
        (
            TWO + f"    - endpoints: [a:eth1, '{special}:x1']\n",
            f"topology.links[0].endpoints[1]: '{special}:x1': the special node '{special}' is"
            " not supported by the lab realiser",
        )
        for special in ("host", "mgmt-net", "macvlan")
    ),
    (
        TWO + "    - endpoints: [a:eth1, c:eth1]\n",
        "topology.links[0].endpoints[1]: 'c:eth1': node 'c' is not defined in topology.nodes",
    ),
    *(
        (
            TWO + f"    - endpoints: ['a:{name}', b:eth1]\n",
            f"topology.links[0].endpoints[0]: 'a:{name}': '{name}' {IFNAME}",
        )
        for name in ("eth1234567890123", "eth1/1", "eth:1", "eth 1", ".", "..", "")
    ),
    (
        TWO + "    - endpoints: [a:eth0, b:eth1]\n",
        "topology.links[0].endpoints[0]: 'a:eth0': eth0 is containerlab's management"
        " interface; use eth1, eth2, ...",
    ),
    (
        TWO + "    - endpoints: [a:eth1, b:eth1]\n    - endpoints: [a:eth1, b:eth2]\n",
        "topology.links[1].endpoints[0]: 'a:eth1' is already used by"
        " topology.links[0].endpoints[0]",
    ),
    (
        TWO + "    - endpoints: [a:eth1, a:eth1]\n",
        "topology.links[0].endpoints[1]: 'a:eth1' is already used by"
        " topology.links[0].endpoints[0]",
    ),
    (
        "name: t\ntopology:\n  nodes: {n: {kind: '{{ .Kind }}'}}\n",
        "line 3: Go template actions ('{{') are not supported by the lab realiser",
    ),
    ("name: t\ntopology: {}\nx: ${OPEN\n", "line 3: '${' has no closing '}'"),
]


@pytest.mark.parametrize(("snippet", "message"), ERRORS)
def test_error_message(tmp_path: Path, snippet: str, message: str) -> None:
    assert load_error(tmp_path, snippet) == message


def test_a_sixteen_byte_interface_name_is_rejected_even_if_shorter_in_characters(
    tmp_path: Path,
) -> None:
    name = "eth-\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"  # 10 characters, 16 bytes
    assert load_error(tmp_path, TWO + f"    - endpoints: ['a:{name}', b:eth1]\n") == (
        f"topology.links[0].endpoints[0]: 'a:{name}': '{name}' {IFNAME}"
    )


def test_a_repeated_key_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, "name: t\ntopology:\n  nodes:\n    n: {}\n    n: {}\n")
    assert message.startswith(f"{tmp_path / 'lab.clab.yml'}: invalid YAML: ")
    assert "key 'n' appears twice" in message
    assert "line 5, column 5" in message


def test_an_unreadable_file_is_a_topology_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.clab.yml"
    with pytest.raises(TopologyError, match="cannot read the topology file") as caught:
        load_topology(missing, environ={})
    assert str(caught.value).startswith(f"{missing}: ")
