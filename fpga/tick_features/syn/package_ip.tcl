# Package the tick-features core as a Vivado IP (VLNV tickpath.dev:tickpath:tick_features:1.0,
# the VLNV the PYNQ driver in engine/backends/fpga/driver.py binds to).
#
#   vivado -mode batch -source fpga/tick_features/syn/package_ip.tcl \
#          -tclargs <ip_repo_dir> [part]
#
# Run from the repository root.  Writes the packaged IP to <ip_repo_dir>/tick_features.
# Not run in CI (no Vivado there); tests/fpga/test_layout.py checks the VLNV below.

set ip_vendor  "tickpath.dev"
set ip_library "tickpath"
set ip_name    "tick_features"
set ip_version "1.0"

set repo_dir [expr {[llength $argv] > 0 ? [lindex $argv 0] : "build/ip_repo"}]
set part     [expr {[llength $argv] > 1 ? [lindex $argv 1] : "xczu7ev-ffvc1156-2-e"}]
set rtl_dir  [file normalize [file join [file dirname [info script]] .. rtl]]
set ip_dir   [file normalize [file join $repo_dir $ip_name]]

create_project -in_memory -part $part
set sources [list \
    [file join $rtl_dir tick_features.v] \
    [file join $rtl_dir tick_features_core.v] \
    [file join $rtl_dir tick_features_axil.v] \
    [file join $rtl_dir tick_features_fields.vh]]
add_files -norecurse $sources
set_property file_type {Verilog Header} [get_files tick_features_fields.vh]
set_property is_global_include true [get_files tick_features_fields.vh]
set_property top tick_features [current_fileset]
update_compile_order -fileset sources_1

ipx::package_project -root_dir $ip_dir -vendor $ip_vendor -library $ip_library \
    -taxonomy /UserIP -import_files -set_current true
set core [ipx::current_core]
set_property name $ip_name $core
set_property version $ip_version $core
set_property display_name "tickpath tick features" $core
set_property description "Per-symbol EMA, VWAP, L1 quote features; AXI4-Stream in/out, AXI4-Lite control" $core
set_property supported_families {zynquplus Production} $core

# Interfaces: the port prefixes follow the AXI naming the packager infers
# (s_axil_* AXI4-Lite slave, s_axis_*/m_axis_* AXI4-Stream); make the
# clock/reset association explicit so the block design automation wires them.
ipx::infer_bus_interfaces xilinx.com:interface:aximm_rtl:1.0 $core
ipx::infer_bus_interfaces xilinx.com:interface:axis_rtl:1.0 $core
ipx::infer_bus_interface aclk xilinx.com:signal:clock_rtl:1.0 $core
ipx::infer_bus_interface aresetn xilinx.com:signal:reset_rtl:1.0 $core
set clk_if [ipx::get_bus_interfaces aclk -of_objects $core]
ipx::add_bus_parameter ASSOCIATED_BUSIF $clk_if
set_property value s_axil:s_axis:m_axis [ipx::get_bus_parameters ASSOCIATED_BUSIF -of_objects $clk_if]
ipx::add_bus_parameter ASSOCIATED_RESET $clk_if
set_property value aresetn [ipx::get_bus_parameters ASSOCIATED_RESET -of_objects $clk_if]
set rst_if [ipx::get_bus_interfaces aresetn -of_objects $core]
ipx::add_bus_parameter POLARITY $rst_if
set_property value ACTIVE_LOW [ipx::get_bus_parameters POLARITY -of_objects $rst_if]

# A 256-byte register window (AXIL_ADDR_BITS = 8).
set mm [ipx::get_memory_maps s_axil -of_objects $core]
if {$mm eq ""} {
    set mm [ipx::add_memory_map s_axil $core]
    set_property slave_memory_map_ref s_axil [ipx::get_bus_interfaces s_axil -of_objects $core]
}
set blk [ipx::add_address_block reg0 $mm]
set_property range 256 $blk
set_property width 32 $blk

# User parameters (the RTL's), editable in the block design.
foreach {param value} {N_SYMBOLS 4096 MUL_STAGES 4 OUT_FIFO_DEPTH 16} {
    set_property value $value [ipx::get_user_parameters $param -of_objects $core]
}

ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
puts "packaged ${ip_vendor}:${ip_library}:${ip_name}:${ip_version} in $ip_dir"
