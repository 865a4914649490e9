"""ROS 2 adapter of promptbox: the `locate` action node and sensor_msgs <-> numpy conversions."""
